"""Loopback ports: picking free ones (for canary servers, the local Prefect server, benchmarks) and testing one."""

from __future__ import annotations

import socket


def pick_free_ports(count: int = 2) -> list[int]:
    """Distinct loopback ports the kernel just handed out (bound to 0, then released). Another process
    may take one before it is bound again: a runner that binds it retries on :class:`PortInUseError`."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
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
