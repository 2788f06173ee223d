"""Free loopback ports: two picks in a row never name the same port, even when the kernel hands it
out again once it is released (which it may: the servers a test or a deploy starts bind them later)."""

from __future__ import annotations

import socket

from servegate import ports


class _Kernel:
    """Hands out the given ports in turn to sockets bound to port 0, as a kernel reusing ports would."""

    def __init__(self, sequence: list[int]) -> None:
        self.sequence = list(sequence)

    def socket(self, *args, **kwargs):
        kernel = self

        class Bound:
            def bind(self, address):
                self.port = kernel.sequence.pop(0)

            def getsockname(self):
                return ("127.0.0.1", self.port)

            def close(self):
                pass

        return Bound()


def test_a_port_handed_out_is_not_handed_out_again_by_the_next_call(monkeypatch):
    monkeypatch.setattr(ports, "_recent", type(ports._recent)(maxlen=256))
    monkeypatch.setattr(ports.socket, "socket", _Kernel([41000, 41000, 41001]).socket)
    assert ports.free_port() == 41000
    assert ports.free_port() == 41001  # the kernel offered 41000 again


def test_real_picks_are_distinct_and_bindable():
    picked = ports.pick_free_ports(3) + [ports.free_port() for _ in range(20)]
    assert len(set(picked)) == len(picked)
    for port in picked[:3]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
