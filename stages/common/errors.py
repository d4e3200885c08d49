"""The one error type a stage reports to its user, the wrapper that reports it, and signals.

SIGTERM is turned into KeyboardInterrupt, like Ctrl-C, so ``with`` blocks unwind; a step
that must not be cut in half runs under ``deferred_signals``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence


class StageError(Exception):
    """A failure the user can act on: reported as one line, exit status 1."""


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_stage(name: str, main: Callable[[Sequence[str] | None], None]) -> None:
    """Run a stage's ``main`` and turn a ``StageError`` into one line on stderr and exit 1.

    So is an ``OSError`` naming a file (a full disk, a read-only or occupied output
    path): what the user must fix is that path, not the code.

    SIGTERM (``dvc queue kill``, CI timeouts) unwinds like Ctrl-C, so an open MLflow
    run is closed as failed and temporary files are removed on the way out.
    """
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        main(None)
    except StageError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as err:
        if err.filename is None:
            raise
        print(f"{name}: error: {err.filename}: {err.strerror}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


_DEFERRED = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGTERM and SIGINT until the block is done; they are acted on right after it.

    For a short step that must finish or be undone whole (swapping files in, moving an
    alias, undoing both), so an interrupt never lands half-way through it. The Python
    handlers are swapped, not the thread's signal mask: with TensorFlow's or MLflow's
    threads running, the kernel may hand the signal to any of them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be changed, and only run, in the main thread
        return
    pending: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: pending.append(signum)) for sig in _DEFERRED
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)  # now handled as it would have been at once
