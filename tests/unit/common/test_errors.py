"""run_stage's one-line report and exit codes, and signals held back by deferred_signals."""

from __future__ import annotations

import os
import signal

import pytest

from stages.common.errors import StageError, deferred_signals, run_stage


@pytest.fixture
def sigterm_interrupts():
    """SIGTERM raises KeyboardInterrupt, as run_stage arranges; the old handler comes back."""
    from stages.common.errors import _interrupt_on_sigterm

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
            StageError("data/raw/mnist.npz: not found"),
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
def test_run_stage_reports_one_line_and_exits(
    raised: BaseException, status: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def main(argv: object) -> None:
        raise raised

    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as caught:
            run_stage("fetch", main)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert caught.value.code == status
    assert capsys.readouterr().err.splitlines() == [line]


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

    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(OSError, match="socket closed"):
            run_stage("fetch", main)
    finally:
        signal.signal(signal.SIGTERM, previous)
