"""The one error type a stage reports to its user, and the wrapper that reports it."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence


class StageError(Exception):
    """A failure the user can act on: reported as one line, exit status 1."""


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_stage(name: str, main: Callable[[Sequence[str] | None], None]) -> None:
    """Run a stage's ``main`` and turn a ``StageError`` into one line on stderr and exit 1.

    SIGTERM (``dvc queue kill``, CI timeouts) unwinds like Ctrl-C, so an open MLflow
    run is closed as failed and temporary files are removed on the way out.
    """
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        main(None)
    except StageError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
