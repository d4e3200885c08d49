"""SIGTERM unwinds like Ctrl-C, and a short step can hold both signals until it is done.

SIGTERM (``dvc queue kill``, CI time-outs, ``kill``) is turned into ``KeyboardInterrupt``
so ``with`` blocks unwind: an open MLflow run is closed as failed and temporary files
are removed on the way out. A step that must not be cut in half runs under
``deferred_signals``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

_DEFERRED = (signal.SIGTERM, signal.SIGINT)


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_on_sigterm() -> None:
    """From now on SIGTERM raises ``KeyboardInterrupt`` in the main thread, as Ctrl-C does."""
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)


@contextlib.contextmanager
def deferred_signals(on_signal: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold SIGTERM and SIGINT until the block is done; they are acted on right after it.

    For a short step that must finish or be undone whole (swapping files in, moving an
    alias, undoing both), so an interrupt never lands half-way through it; and for a long
    one that can be asked to stop early (a fit: ``on_signal`` asks it, when a signal
    arrives). The Python handlers are swapped, not the thread's signal mask: with
    TensorFlow's or MLflow's threads running, the kernel may hand the signal to any of them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be changed, and only run, in the main thread
        return
    pending: list[int] = []

    def hold(signum: int, frame: object) -> None:
        pending.append(signum)
        if on_signal is not None:
            on_signal()

    previous = {sig: signal.signal(sig, hold) for sig in _DEFERRED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)  # now handled as it would have been at once
