"""Process identity, and the one rule for whether a recorded process still runs.

A pid alone names a process only while it runs: once it ends the kernel hands
the number to the next process. So every record servegate leaves for a later
run to judge (pid files, container labels, MLflow tags, the store's history,
lock holder files, work dir names) names its process by three things:

- ``pid``;
- ``start_ticks``: field 22 of ``/proc/<pid>/stat``, the start time in clock
  ticks since boot, fixed for the process's life (None where it could not be
  read; such a record matches any start time);
- ``host``: a pid means something only on the machine, and in the pid
  namespace, that wrote it. Written as ``<hostname>#pidns<inode>`` (the inode
  of ``/proc/self/ns/pid``): containers that share a host name (``--network
  host``) but not a pid namespace name different hosts, so none judges the
  others' pids by its own ``/proc``. Containers started with ``--pid host``
  share the namespace and judge each other exactly. A bare host name (records
  written before the namespace was recorded) is judged as before: this host's.

The rule (:meth:`ProcessIdentity.is_alive`): a recorded process is alive while
this host has a process with that pid and that start time. A record from
another host is *unknown* (None), never "dead": nothing here may clean up after
a process that may be running elsewhere (a shared store, a shared Docker engine).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_GONE_STATES = ("Z", "X")  # a zombie has finished its work: dead for our purposes
_UNREADABLE = -1            # /proc/<pid> exists but cannot be read (hidepid, another user's namespace)


def _read_start_ticks(pid: int) -> int | None:
    """Start ticks of ``pid``; None when no such (living) process; ``_UNREADABLE`` when it exists unreadably."""
    if pid <= 0:
        return None
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return _UNREADABLE if _signalable(pid) else None  # no /proc here: fall back to kill(pid, 0)
    except PermissionError:
        return _UNREADABLE
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    fields = raw[raw.rindex(")") + 2:].split()
    if fields[0] in _GONE_STATES:
        return None
    return int(fields[19])


def _signalable(pid: int) -> bool:
    """Whether a process ``pid`` exists (``kill(pid, 0)``), for systems where /proc cannot tell."""
    if Path("/proc/self/stat").exists():
        return False  # /proc works, and it has no entry for pid: there is no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it exists, owned by someone else
    return True


def start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None when there is no such process (or unreadable)."""
    ticks = _read_start_ticks(pid)
    return None if ticks == _UNREADABLE else ticks


def group_exists(pgid: int) -> bool:
    """True while any process is in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_PIDNS_MARK = "#pidns"


def this_host() -> str:
    """This process's host as records name it: ``<hostname>#pidns<inode>`` (bare host name without /proc)."""
    try:
        return f"{socket.gethostname()}{_PIDNS_MARK}{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return socket.gethostname()


def is_this_host(host: str) -> bool:
    """Whether pids recorded under ``host`` are this process's to judge (see the module docstring)."""
    if _PIDNS_MARK in host:
        return host == this_host()
    return host == socket.gethostname()  # a record from before namespaces were recorded


def _as_int(value: object) -> int | None:
    """An int from an int or a string of digits (labels and tags are strings); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


@dataclass(frozen=True)
class ProcessIdentity:
    """One process, recognisable after its pid is recycled and on another machine."""

    pid: int
    start_ticks: int | None
    host: str

    @classmethod
    def current(cls) -> ProcessIdentity:
        pid = os.getpid()
        return cls(pid, start_ticks(pid), this_host())

    @classmethod
    def of_local(cls, pid: int, ticks: int | None = None) -> ProcessIdentity:
        """A process of this host (records that never named a host: local pid files, work dir names)."""
        return cls(pid, ticks, this_host())

    def is_alive(self) -> bool | None:
        """True while it runs; False once it is gone (or its pid is another process's).

        None (unknown) for another host's process, and for a record without a pid.
        """
        if not is_this_host(self.host) or self.pid <= 0:
            return None
        ticks = _read_start_ticks(self.pid)
        if ticks is None:
            return False
        if ticks == _UNREADABLE or self.start_ticks is None:
            return True  # its pid runs and we cannot compare start times: assume the same process
        return ticks == self.start_ticks

    def is_dead(self) -> bool:
        """Whether what it left may be cleaned up: known to be gone from this host (never another host's)."""
        return self.is_alive() is False

    # -- records: pid files, labels, tags, history lines, names -----------------------------------
    def to_dict(self, prefix: str = "") -> dict[str, object]:
        """``{prefix}pid``, ``{prefix}ticks``, ``{prefix}host`` (e.g. prefix ``"owner_"`` for a pid file)."""
        return {f"{prefix}pid": self.pid, f"{prefix}ticks": self.start_ticks, f"{prefix}host": self.host}

    def to_labels(self, prefix: str = "servegate.owner_") -> dict[str, str]:
        """The same as strings (Docker labels, MLflow tags); unknown start ticks are ``""``."""
        return {key: "" if value is None else str(value) for key, value in self.to_dict(prefix).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, object], prefix: str = "",
                  default_host: str | None = None) -> ProcessIdentity | None:
        """Read what :meth:`to_dict` or :meth:`to_labels` wrote; None without a valid pid.

        A record without a host is judged as this host's only when ``default_host`` says so
        (pass :func:`this_host` for records that never named one, e.g. a local pid file).
        """
        pid = _as_int(data.get(f"{prefix}pid"))
        host = data.get(f"{prefix}host") or default_host
        if pid is None or pid <= 0 or not isinstance(host, str):
            return None
        return cls(pid, _as_int(data.get(f"{prefix}ticks")), host)

    @classmethod
    def from_history(cls, record: object) -> ProcessIdentity:
        """The process that wrote a store history line (``pid``, ``host``, ``ticks`` attributes).

        Lines written before ``ticks`` was recorded match any start time; a line
        without a pid or host gives an identity that is never dead (unknown).
        """
        pid = _as_int(getattr(record, "pid", None))
        host = getattr(record, "host", None)
        return cls(pid if pid is not None else 0, _as_int(getattr(record, "ticks", None)),
                   host if isinstance(host, str) else "")

    def __str__(self) -> str:
        """``<pid>-<ticks>@<host>`` (``?`` for unknown ticks): a compact form for names and messages."""
        return f"{self.pid}-{'?' if self.start_ticks is None else self.start_ticks}@{self.host}"

    @classmethod
    def parse(cls, text: str) -> ProcessIdentity | None:
        """Read what ``str()`` wrote; None when ``text`` is not such a string."""
        head, sep, host = text.partition("@")
        pid, _, ticks = head.partition("-")
        if not sep or not host or not pid.isdigit() or not (ticks.isdigit() or ticks == "?"):
            return None
        return cls(int(pid), int(ticks) if ticks.isdigit() else None, host)


def abandoned(record_pid: object, record_host: object, record_ticks: object = None) -> bool:
    """Whether the process a record names (pid, host and, when recorded, start ticks) is known to be gone.

    For records such as the store's history lines: False for another host's
    process, for a process that still runs, and for a record without a pid.
    """
    owner = ProcessIdentity.from_dict({"pid": record_pid, "host": record_host, "ticks": record_ticks})
    return owner is not None and owner.is_dead()
