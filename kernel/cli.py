"""The one way every command of the project reports a failure: one line, then an exit status.

``PROG: error: WHAT`` on stderr names what was wrong and what was expected; the status is
1 for a failure the user can act on, 2 for a usage error (argparse's), 130 for an interrupt
(Ctrl-C or SIGTERM), and whatever ``main`` returns otherwise. A bug (any other exception)
keeps its traceback, unless the command asks for every failure to be one line
(``any_error``), as a command driving outside services does.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

from kernel.signals import interrupt_on_sigterm

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class CommandError(Exception):
    """A failure the user can act on: reported as one line, exit status 1."""


def one_line(text: str) -> str:
    """``text`` with its line breaks shown as ``\\n``: a message quoting a file name or a
    decoder's words keeps the one-line promise."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def report_error(prog: str, message: str) -> None:
    """Print ``PROG: error: MESSAGE`` as one line on stderr."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr, flush=True)


def run_command(
    prog: str,
    main: Callable[[Sequence[str] | None], int | None],
    argv: Sequence[str] | None = None,
    *,
    expected: tuple[type[Exception], ...] = (),
    any_error: bool = False,
    interrupted: str = "interrupted",
) -> int:
    """Run ``main(argv)`` and return its exit status, every failure reported as one line.

    ``CommandError`` and the ``expected`` exception types are the user's to fix: their
    message is the line. So is an ``OSError`` naming a file (a full disk, a read-only or
    occupied output path). SIGTERM unwinds like Ctrl-C; the ``interrupted`` words follow
    ``PROG:`` on the way out. A reader that leaves a pipe early (``| head``) ends the
    command quietly.
    """
    interrupt_on_sigterm()
    try:
        return main(argv) or 0
    except (CommandError, *expected) as err:
        report_error(prog, str(err))
    except BrokenPipeError:
        # Point stdout at devnull so Python's flush at exit does not raise again (the
        # recipe of the signal module's documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as err:
        if err.filename is None and not any_error:
            raise
        report_error(prog, _os_error_text(err))
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as err:
        if not any_error:
            raise
        lines = str(err).strip().splitlines() or ["(no message)"]
        report_error(prog, f"{type(err).__name__}: {lines[0]}")
    return EXIT_FAILED


def _os_error_text(err: OSError) -> str:
    if err.filename is None:
        return f"{type(err).__name__}: {err.strerror or err}"
    return f"{err.filename}: {err.strerror}"


def exit_process(status: int) -> NoReturn:
    """End the process with ``status``, as the interpreter would, minus its teardown.

    Threads are shut down and ``atexit`` handlers run (MLflow's, logging's, temporary
    folders'), the standard streams are flushed, then the process exits without
    freeing each module: a process that loaded TensorFlow and MLflow otherwise spends
    one to two seconds of every stage run on that alone. Only for a command whose files
    are all written and closed, as the stages' are when ``run_command`` returns.
    """
    shutdown_threads = getattr(threading, "_shutdown", None)  # what Py_FinalizeEx calls first
    if shutdown_threads is not None:
        shutdown_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to say
            pass
    os._exit(status)


class OneLineArgumentParser(argparse.ArgumentParser):
    """A command's arguments whose usage error is one line, ``NAME: error: …; PROG --help
    lists …``, exit status 2 (``EXIT_USAGE``); its subcommands' parsers are of this kind too."""

    def __init__(self, *args, name: str | None = None, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.name = name or self.prog.split()[-1]

    def error(self, message: str) -> NoReturn:
        report_error(self.name, f"{message}; {self.prog} --help lists what it takes")
        self.exit(EXIT_USAGE)


def positive_whole_number(text: str) -> int:
    """An argparse ``type``: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return value
