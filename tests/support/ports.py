"""A free loopback port for a server a test starts."""

from __future__ import annotations

from servegate.ports import free_port

__all__ = ["free_port"]
