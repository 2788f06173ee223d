"""SIGTERM and SIGINT during a deploy: a cancellation, undone like any failure and never blamed on a model.

CI sends SIGTERM (or SIGINT) when a job is cancelled or times out. Left to
Python and Prefect, the signal surfaces as whatever exception the code it
interrupted turns it into (Prefect's ``TerminationSignal`` inside TensorFlow's
loader once came out as "SavedModel ... cannot be loaded", blaming
production), then the process dies with 143 or 130 and prints nothing.

Instead, while :func:`handlers` is active, the first SIGTERM or SIGINT is
noted and raised as :class:`DeployCancelled` in the main thread; later ones
are only noted, so the undo and the recording finish. Whatever exception the
interrupted code ends up raising, :func:`reason` ("cancelled by SIGTERM") is
the attempt's reason from then on: the steps' undo, the store's rejection
reason, MLflow and the outcome's verdict ``cancelled`` all read it. The
command then exits ``128 + signal number``, as a shell reports a process
ended by that signal.

A signal can land while the main thread runs a finalizer (TensorFlow's
``__del__`` during garbage collection, a weakref callback). Python cannot
propagate an exception out of one: it hands it to ``sys.unraisablehook``,
which would print a traceback and drop the cancellation until the next
:func:`check`. While :func:`handlers` is active, the hook takes such a
:class:`DeployCancelled` back and has a timer thread deliver the signal again
(``_thread.interrupt_main``) a millisecond later, so it is raised as soon as the
finalizer has returned.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_received: list[int] = []


class DeployCancelled(BaseException):
    """A SIGTERM or SIGINT stopped the attempt (a BaseException: ``except Exception`` must not swallow it)."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.signal = signal.Signals(signum).name
        self.exit_code = 128 + int(signum)
        super().__init__(f"cancelled by {self.signal}")


@dataclass
class Window:
    """Whether a first signal raises (True while steps run) or is only noted (while the outcome is recorded)."""

    raising: bool = True


_windows: list[Window] = []
# Cancellations a finalizer swallowed, to raise again once it has returned.
_swallowed: list[int] = []
REDELIVERY_DELAY_S = 0.001
_previous_hooks: list = []


def _handler(signum: int, frame) -> None:
    if _swallowed:
        if _inside_hook(frame):  # raising here would be swallowed again
            _redeliver_soon()
            return
        signum = _swallowed.pop()
    else:
        first = not _received
        _received.append(signum)
        if not first:
            return
    if _windows and _windows[-1].raising:
        raise DeployCancelled(signum)


def _redeliver_swallowed(unraisable) -> None:
    """``sys.unraisablehook`` while handlers are active: a swallowed cancellation is delivered again."""
    exc = unraisable.exc_value
    if isinstance(exc, DeployCancelled) and threading.current_thread() is threading.main_thread():
        _swallowed.append(exc.signum)
        _redeliver_soon()
        return
    _previous_hooks[-1](unraisable)


def _redeliver_soon() -> None:
    """Deliver the swallowed signal again from another thread, so it lands after the hook has returned.

    Calling ``interrupt_main`` here instead would run the handler at the hook's
    (or the handler's) very next instruction, still inside the unraisable context.
    """

    def deliver() -> None:
        # Only to this module's handler: another one installed meanwhile (Prefect's) would
        # take it for a second signal; the next check() raises it then.
        if _swallowed and signal.getsignal(_swallowed[-1]) is _handler:
            _thread.interrupt_main(_swallowed[-1])

    timer = threading.Timer(REDELIVERY_DELAY_S, deliver)
    timer.daemon = True
    timer.start()


def _inside_hook(frame) -> bool:
    while frame is not None:
        if frame.f_code is _redeliver_swallowed.__code__:
            return True
        frame = frame.f_back
    return False


def received() -> int | None:
    """The first cancellation signal this process got, or None."""
    return _received[0] if _received else None


def reason() -> str | None:
    """``"cancelled by SIGTERM"`` (or SIGINT) once a signal arrived; None before."""
    signum = received()
    return None if signum is None else f"cancelled by {signal.Signals(signum).name}"


def signal_name() -> str | None:
    signum = received()
    return None if signum is None else signal.Signals(signum).name


def exit_code() -> int | None:
    """``128 + N`` for the signal received, or None."""
    signum = received()
    return None if signum is None else 128 + signum


def check() -> None:
    """Raise :class:`DeployCancelled` when a signal arrived (between steps: nothing starts after one)."""
    signum = received()
    if signum is not None and _windows and _windows[-1].raising:
        raise DeployCancelled(signum)


@contextmanager
def handlers(raising: bool = True) -> Iterator[Window]:
    """Catch SIGTERM and SIGINT in this block (main thread only; elsewhere nothing is installed).

    Prefect's flow engine replaces SIGTERM's handler with its own for the run, so
    the flow body enters this block again; on exit the previous handlers return.
    """
    window = Window(raising)
    if threading.current_thread() is not threading.main_thread():
        yield window
        return
    previous = {signum: signal.signal(signum, _handler) for signum in SIGNALS}
    _previous_hooks.append(sys.unraisablehook)
    sys.unraisablehook = _redeliver_swallowed
    _windows.append(window)
    try:
        yield window
    finally:
        _windows.remove(window)
        sys.unraisablehook = _previous_hooks.pop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
