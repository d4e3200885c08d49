"""run_command's one-line report and exit statuses, and signals held back by deferred_signals."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from kernel.cli import CommandError, run_command
from kernel.signals import deferred_signals


@contextlib.contextmanager
def restored_sigterm():
    """run_command installs its SIGTERM handler; the test process gets its own back."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def sigterm_interrupts():
    """SIGTERM raises KeyboardInterrupt, as run_command arranges; the old handler comes back."""
    from kernel.signals import _interrupt_on_sigterm

    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_a_signal_inside_the_block_arrives_after_it(sigterm_interrupts) -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("first half")
            steps.append("second half")
        steps.append("after the block")  # never reached: the interrupt lands first
    assert steps == ["first half", "second half"]


def test_a_long_step_is_asked_to_stop_and_interrupted_once_it_has(sigterm_interrupts) -> None:
    """A fit: the signal asks it to stop (on_signal), it finishes its step, then the
    interrupt lands, never inside it."""
    asked, steps = [], []
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals(on_signal=lambda: asked.append("stop")):
            for step in range(100):
                if step == 3:
                    os.kill(os.getpid(), signal.SIGTERM)
                steps.append(step)
                if asked:  # as Keras reads model.stop_training after each step call
                    break
        steps.append("after the block")
    assert asked == ["stop"] and steps == [0, 1, 2, 3]


def test_without_the_block_the_signal_interrupts_at_once(sigterm_interrupts) -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        steps.append("not reached")
    assert steps == []


def test_the_handlers_are_restored(sigterm_interrupts) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    with pytest.raises(ValueError), deferred_signals():
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        raise ValueError("the block fails")
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_a_signal_sent_from_another_thread_is_held_too(sigterm_interrupts) -> None:
    """Process-directed signals may go to any thread; the hold must not depend on which."""
    import threading

    steps = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals():
            sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGTERM))
            sender.start()
            sender.join()
            for _ in range(1000):  # bytecode the main thread runs while the signal is pending
                steps.append(len(steps))
            steps.append("done")
    assert steps[-1] == "done"


@pytest.mark.parametrize(
    ("raised", "status", "line"),
    [
        (
            CommandError("data/raw/mnist.npz: not found"),
            1,
            "fetch: error: data/raw/mnist.npz: not found",
        ),
        (KeyboardInterrupt(), 130, "fetch: interrupted"),
        (
            OSError(28, "No space left on device", "data/raw/mnist.npz"),
            1,
            "fetch: error: data/raw/mnist.npz: No space left on device",
        ),
    ],
)
def test_run_command_reports_one_line_and_returns_the_status(
    raised: BaseException, status: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def main(argv: object) -> None:
        raise raised

    with restored_sigterm():
        assert run_command("fetch", main) == status
    assert capsys.readouterr().err.splitlines() == [line]


@pytest.mark.parametrize(
    ("raised", "options", "line"),
    [
        # an error type the command names as the user's is one line, as CommandError is
        (LookupError("no such sweep"), {"expected": (LookupError,)}, "team: error: no such sweep"),
        # a command driving outside services: any failure is one line, its type named
        (
            RuntimeError("connection refused\ntraceback follows"),
            {"any_error": True},
            "team: error: RuntimeError: connection refused",
        ),
        (OSError("socket closed"), {"any_error": True}, "team: error: OSError: socket closed"),
        # a message with a line break keeps to one line
        (CommandError("bad name 'a\nb'"), {}, "team: error: bad name 'a\\nb'"),
        (
            KeyboardInterrupt(),
            {"interrupted": "interrupted; run it again"},
            "team: interrupted; run it again",
        ),  # fmt: skip
    ],
)
def test_what_a_command_counts_as_the_users_to_fix(
    raised: BaseException, options: dict, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def main(argv: object) -> None:
        raise raised

    with restored_sigterm():
        status = run_command("team", main, **options)
    assert status == (130 if isinstance(raised, KeyboardInterrupt) else 1)
    assert capsys.readouterr().err.splitlines() == [line]


def test_main_s_own_status_and_arguments_come_through() -> None:
    seen = []

    def main(argv: object) -> int:
        seen.append(argv)
        return 3

    with restored_sigterm():
        assert run_command("team", main, ["status"]) == 3
    assert seen == [["status"]]


def test_an_unexpected_error_keeps_its_traceback() -> None:
    def main(argv: object) -> None:
        raise LookupError("a bug")

    with restored_sigterm(), pytest.raises(LookupError, match="a bug"):
        run_command("fetch", main)


def test_a_signal_is_held_while_other_threads_run(sigterm_interrupts) -> None:
    """Other threads (TensorFlow's, MLflow's) may receive the signal and hand the interpreter
    over to the main thread mid-block: the hold must not rely on the main thread's mask."""
    import threading
    import time

    stop = threading.Event()

    def busy() -> None:  # runs Python code, so the interpreter switches threads often
        while not stop.is_set():
            pass

    bystander = threading.Thread(target=busy, daemon=True)
    bystander.start()
    steps = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with deferred_signals():
                os.kill(os.getpid(), signal.SIGTERM)
                deadline = time.monotonic() + 0.3
                while time.monotonic() < deadline:
                    steps.append(len(steps))
                steps.append("done")
    finally:
        stop.set()
        bystander.join()
    assert steps[-1] == "done"


def test_an_os_error_without_a_file_is_a_bug_and_keeps_its_traceback() -> None:
    def main(argv: object) -> None:
        raise OSError("socket closed")

    with restored_sigterm(), pytest.raises(OSError, match="socket closed"):
        run_command("fetch", main)


EXITING = """
import atexit, concurrent.futures, pathlib, sys, time
from kernel.cli import exit_process
out = pathlib.Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
def slow_write():
    time.sleep(0.5)
    (out / "worker").write_text("done")
concurrent.futures.ThreadPoolExecutor(1).submit(slow_write)
sys.stdout.write("buffered, no newline")
exit_process(3)
"""


def test_exit_process_finishes_threads_and_atexit_and_flushes(tmp_path) -> None:
    """What the interpreter's own exit does, the teardown of every module aside."""
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run(
        [sys.executable, "-c", EXITING, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    assert result.returncode == 3
    assert result.stdout == "buffered, no newline"
    assert (tmp_path / "worker").read_text() == "done"  # the pending task was not cut off
    assert (tmp_path / "atexit").read_text() == "ran"
    assert result.stderr == ""
