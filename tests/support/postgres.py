"""A throwaway PostgreSQL cluster on loopback (Debian's ``postgresql`` package: ``initdb`` and ``pg_ctl``),
for a Prefect server backed by PostgreSQL as docs/scaling.md tells users to run one with several workers.

The cluster lives in its own temporary directory, listens on 127.0.0.1 on a free port only (no Unix
socket), trusts loopback connections and trades durability for speed (``fsync=off``: nothing in it
outlives the test). PostgreSQL refuses to run as root, so as root the server runs as ``nobody``.
``scripts/ensure-postgres.sh`` installs the package where it is missing (CI's fresh machine).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port

USER = "servegate"
DATABASE = "prefect"


def postgres_bin() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: Debian keeps them off PATH, under
    /usr/lib/postgresql/<major>/bin (the newest major wins)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def require_postgres() -> Path:
    """The binaries' directory; a missing PostgreSQL fails the test under SERVEGATE_REQUIRE_DOCKER=1 (CI,
    which runs scripts/ensure-postgres.sh first) and skips it elsewhere."""
    found = postgres_bin()
    if found is None:
        message = "PostgreSQL (initdb, pg_ctl) not found: run scripts/ensure-postgres.sh"
        if os.environ.get("SERVEGATE_REQUIRE_DOCKER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass
class Postgres:
    bin: Path
    data: Path
    port: int
    log: Path        # inside the cluster's directory (the server's user writes it)
    keep_log: Path   # where stop() leaves a copy for the test's report

    @property
    def url(self) -> str:
        """The connection URL Prefect's server takes (``PREFECT_API_DATABASE_CONNECTION_URL``)."""
        return f"postgresql+asyncpg://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"{' '.join(args[:2])}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w")
        if self.log.exists():
            shutil.copyfile(self.log, self.keep_log)
        shutil.rmtree(self.data.parent, ignore_errors=True)


def start_postgres(log_dir: Path) -> Postgres:
    """initdb, pg_ctl start (waiting until it accepts connections), createdb; logs to ``log_dir``."""
    binaries = require_postgres()
    # a directory of its own, which the server's user may enter (pytest's tmp dirs are root's alone)
    top = Path(tempfile.mkdtemp(prefix="servegate-pg-"))
    os.chmod(top, 0o755)
    if os.geteuid() == 0:
        shutil.chown(top, "nobody")
    server = Postgres(binaries, top / "data", free_port(), top / "postgres.log", log_dir / "postgres.log")
    server._run(str(binaries / "initdb"), "-D", str(server.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                "--no-sync")
    options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -c unix_socket_directories='' "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    server._run(str(binaries / "pg_ctl"), "start", "-D", str(server.data), "-l", str(server.log), "-o", options, "-w",
                "-t", "60")
    deadline = time.monotonic() + 30
    while True:
        try:
            server._run(str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(server.port), "-U", USER,
                        DATABASE, timeout=30)
            return server
        except AssertionError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.5)
