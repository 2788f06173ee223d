"""The demo's own Prefect: a local server on a database in the demo's work dir, whatever the shell says.

The demo trains and deploys models named like real ones. On the user's Prefect
(``PREFECT_API_URL``, a profile, a database URL) its runs and events would
meet the user's deployments and Automations: ``prefect.yaml``'s ``deploy-model``
trigger, for one, deploys whatever an event names into the default store, which
is the user's production. So the demo never talks to the user's Prefect: it
starts a Prefect server of its own (:class:`~servegate.flows.local_api.LocalPrefectServer`)
with ``PREFECT_HOME`` and the database in ``<work dir>/prefect``, and points
this process at it, for the length of the demo. The user's settings are left as
they are on disk; this process's environment is restored afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: Settings that would lead this process (or its server) to the user's Prefect; the demo drops them.
_USER_PREFECT_VARIABLES = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_UI_URL", "PREFECT_PROFILE",
                           "PREFECT_PROFILES_PATH", "PREFECT_API_DATABASE_CONNECTION_URL",
                           "PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE")


@dataclass(frozen=True)
class DemoPrefect:
    """Where the demo's Prefect lives, and what the shell had configured (left untouched)."""

    home: Path
    api_url: str
    user_api_url: str | None

    def notice(self) -> str:
        """What the terminal says about it."""
        where = f"its own local Prefect server (database {self.home / 'prefect.db'})"
        if self.user_api_url:
            return (f"Prefect: the demo runs on {where}, not on PREFECT_API_URL={self.user_api_url}: "
                    "its runs and events never reach your Prefect or trigger your deployments")
        return f"Prefect: the demo runs on {where}"

    def ui_command(self, bin_dir: Path) -> str:
        """The command that shows the demo's runs in the Prefect UI afterwards."""
        return f"PREFECT_HOME={self.home} {bin_dir / 'prefect'} server start   # then http://127.0.0.1:4200/runs"


@contextmanager
def own_prefect(work_dir: Path) -> Iterator[DemoPrefect]:
    """The demo's Prefect server under ``work_dir / "prefect"``, this process pointed at it; afterwards
    this process's Prefect environment is as it was."""
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL

    from servegate.flows import local_api

    user_api_url = PREFECT_API_URL.value() or None
    home = Path(work_dir) / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    saved = {k: v for k, v in os.environ.items() if k.startswith("PREFECT_")}
    try:
        for variable in _USER_PREFECT_VARIABLES:
            os.environ.pop(variable, None)
        os.environ["PREFECT_HOME"] = str(home)  # also where Prefect looks for profiles: none there
        os.environ["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{home / 'prefect.db'}"
        refresh_global_settings_context()
        local_api.allow_slow_first_start()
        server = local_api.LocalPrefectServer.launch()
        server.wait_until_healthy(local_api.startup_timeout_s())
        server.use()
        yield DemoPrefect(home=home, api_url=server.api_url, user_api_url=user_api_url)
    finally:
        # The server itself stops at interpreter exit (launch() registered that), after Prefect's log
        # and event workers have sent what they hold.
        for variable in [k for k in os.environ if k.startswith("PREFECT_")]:
            del os.environ[variable]
        os.environ.update(saved)
        refresh_global_settings_context()
