"""Loopback ports: picking free ones (for canary servers, the local Prefect server, benchmarks) and testing one."""

from __future__ import annotations

import collections
import socket
import threading


# The ports this process handed out lately. Once released, a port is free to the kernel again, and
# the next bind to 0 may get it back, so two calls (one for gRPC, one for REST) could name the same
# port for two servers; a port handed out is not handed out again while it is among the recent ones.
_recent: collections.deque[int] = collections.deque(maxlen=256)
_recent_guard = threading.Lock()


def pick_free_ports(count: int = 2) -> list[int]:
    """Distinct loopback ports the kernel just handed out (bound to 0, then released), none of them
    handed out lately by this process. Another process may take one before it is bound again: a runner
    that binds it retries on :class:`PortInUseError`."""
    sockets = []
    try:
        with _recent_guard:
            ports: list[int] = []
            while len(ports) < count:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind(("127.0.0.1", 0))
                sockets.append(sock)  # held until all are picked: the kernel hands out no port twice
                port = sock.getsockname()[1]
                if port not in _recent:
                    ports.append(port)
            _recent.extend(ports)
            return ports
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """One free loopback port (see :func:`pick_free_ports`)."""
    return pick_free_ports(1)[0]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
