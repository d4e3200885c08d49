"""monitor.request_log: records appended whole, files of their own per writer, rotation by size
and day, old days pruned, and a folder that cannot be written never failing an answer."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from monitor import request_log
from monitor.descriptors import ANSWER_FIELDS, DESCRIPTORS
from monitor.request_log import RequestLog, ServedModel, file_day
from monitor.window import parse_duration, read_window

MODEL = ServedModel("mnist-digits", "7", "champion")


def _batch(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = (rng.random((n, 28, 28)) > 0.85) * 255.0
    logits = rng.normal(size=(n, 10))
    return images, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def _lines(folder) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(folder.glob("requests-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


class _Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


def test_each_image_is_one_record_pandas_reads(tmp_path) -> None:
    images, probabilities = _batch(5)
    log = RequestLog(tmp_path / "log", "mlserver")
    log.record(images, probabilities, MODEL)
    log.close()
    (path,) = (tmp_path / "log").glob("requests-*.jsonl")
    frame = pd.read_json(path, lines=True)
    assert len(frame) == 5
    assert set(frame.columns) >= {"time", "model", "version", "alias", "digest", "request"}
    assert set(frame.columns) >= set(DESCRIPTORS) | set(ANSWER_FIELDS)
    assert "pixels" not in frame.columns, "pixels only when keep_pixels says so"
    assert frame["digit"].tolist() == probabilities.argmax(axis=1).tolist()
    assert (frame["version"].astype(str) == "7").all() and (frame["alias"] == "champion").all()
    assert frame["index"].tolist() == [0, 1, 2, 3, 4] and frame["request"].nunique() == 1
    assert frame["digest"].nunique() == 5


def test_pixels_are_kept_when_asked(tmp_path) -> None:
    images, probabilities = _batch(2)
    log = RequestLog(tmp_path, "mlserver", keep_pixels=True)
    log.record(images, probabilities, MODEL)
    log.close()
    records = _lines(tmp_path)
    assert [np.array(r["pixels"]).reshape(28, 28).tolist() for r in records] == images.tolist()


def test_a_restart_and_a_second_server_append_files_of_their_own(tmp_path) -> None:
    images, probabilities = _batch(40)
    first = RequestLog(tmp_path, "mlserver")
    first.record(images[:10], probabilities[:10], MODEL)
    first.close()
    (before,) = tmp_path.glob("requests-*.jsonl")
    kept = before.read_bytes()
    # a restart (a new writer) and a twin writing at the same time, from other processes
    code = (
        "import sys, numpy as np\n"
        "from monitor.request_log import RequestLog, ServedModel\n"
        "log = RequestLog(sys.argv[1], sys.argv[2])\n"
        "for k in range(20):\n"
        "    log.record(np.full((3, 28, 28), 255.0), np.eye(10)[:3], ServedModel('m', '1'))\n"
        "log.close()\n"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path), name])
        for name in ("mlserver", "mlserver")
    ]
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0]
    assert before.read_bytes() == kept, "the earlier file is never rewritten"
    files = sorted(tmp_path.glob("requests-*.jsonl"))
    assert len(files) == 3
    assert len(_lines(tmp_path)) == 10 + 2 * 20 * 3  # every line whole and parseable


def test_files_rotate_past_their_size_and_at_midnight(tmp_path) -> None:
    clock = _Clock(dt.datetime(2026, 3, 1, 23, 59, tzinfo=dt.UTC))
    log = RequestLog(tmp_path, "page", rotate_bytes=2000, clock=clock)
    images, probabilities = _batch(1)
    for _ in range(10):  # each written on its own: a file takes whole writes
        log.record(images, probabilities, MODEL)
        log.flush()
    clock.now = dt.datetime(2026, 3, 2, 0, 1, tzinfo=dt.UTC)
    log.record(images, probabilities, MODEL)
    log.close()
    files = sorted(tmp_path.glob("requests-*.jsonl"))
    days = [file_day(path) for path in files]
    assert days.count(dt.date(2026, 3, 1)) >= 3, [p.name for p in files]  # ~450 bytes a line
    assert days[-1] == dt.date(2026, 3, 2)
    assert all(path.stat().st_size <= 2000 for path in files)
    assert len(_lines(tmp_path)) == 11


def test_days_older_than_keep_days_are_deleted_when_a_file_begins(tmp_path) -> None:
    old = tmp_path / "requests-2026-01-01-page-000000-host-1-001.jsonl"
    recent = tmp_path / "requests-2026-02-25-page-000000-host-1-001.jsonl"
    other = tmp_path / "notes.txt"
    for path in (old, recent, other):
        path.write_text("{}\n")
    clock = _Clock(dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))
    log = RequestLog(tmp_path, "page", keep_days=30, clock=clock)
    log.record(*_batch(1), MODEL)
    log.close()
    assert not old.exists() and recent.exists() and other.exists()


def test_a_folder_that_cannot_be_written_warns_once_and_answers_go_on(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    warnings: list[str] = []
    log = RequestLog(blocker / "log", "mlserver", warn=warnings.append)
    for _ in range(5):
        log.record(*_batch(2), MODEL)  # never raises
    log.close()
    assert len(warnings) == 1 and str(blocker) in warnings[0], warnings
    assert "answers go on unlogged" in warnings[0]


def test_a_full_disk_warns_and_the_log_resumes_when_there_is_room_again(tmp_path) -> None:
    # a file size limit makes the writes fail as a full disk does (EFBIG instead of ENOSPC)
    code = (
        "import resource, signal, sys, numpy as np\n"
        "from monitor.request_log import RequestLog, ServedModel\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "log = RequestLog(sys.argv[1], 'mlserver', rotate_bytes=10**9)\n"
        "model = ServedModel('m', '1')\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (3000, resource.RLIM_INFINITY))\n"
        "for k in range(10):\n"
        "    log.record(np.full((1, 28, 28), 255.0), np.eye(10)[:1], model)\n"
        "log.flush()\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)\n"
        "log.record(np.zeros((1, 28, 28)), np.eye(10)[:1], model)\n"
        "log.close()\n"
        "print('answered')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "answered", done.stderr
    warned = done.stderr.strip().splitlines()
    assert len(warned) == 2, warned
    assert warned[0].startswith("request log: warning: cannot write"), warned
    assert warned[1] == f"request log: warning: writing {tmp_path} again"
    records = read_window(tmp_path)
    assert 1 < len(records) < 11 and records["ink_fraction"].iloc[-1] == 0, "the last one"
    assert len(list(tmp_path.glob("requests-*.jsonl"))) == 2, "a new file after a cut line"


def test_a_writer_behind_by_more_than_the_queue_drops_and_says_so(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(request_log, "QUEUE_IMAGES", 4)
    warnings: list[str] = []
    log = RequestLog(tmp_path, "mlserver", warn=warnings.append)
    log.record(*_batch(5), MODEL)  # more than the queue takes at once: dropped
    log.record(*_batch(3), MODEL)
    log.close()
    assert len(_lines(tmp_path)) == 3
    assert "4 images behind" in warnings[0]
    assert warnings[1].endswith("(5 images were not logged)")


def test_past_max_day_bytes_a_day_records_are_dropped_counted_and_said_once(tmp_path) -> None:
    clock = _Clock(dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC))
    warnings: list[str] = []
    cap = 2000  # about four lines of ~450 bytes
    log = RequestLog(tmp_path, "page", max_day_bytes=cap, clock=clock, warn=warnings.append)
    for seed in range(10):
        log.record(*_batch(3, seed=seed), MODEL)
        log.flush()
    written = sum(path.stat().st_size for path in tmp_path.glob("requests-*.jsonl"))
    kept = len(_lines(tmp_path))
    assert 0 < written <= cap and 3 <= kept < 30, (written, kept)
    assert len(warnings) == 1 and "wrote its 2000 bytes for 2026-03-01" in warnings[0], warnings
    assert "answers go on unlogged until the day ends" in warnings[0]
    clock.now = dt.datetime(2026, 3, 2, 0, 1, tzinfo=dt.UTC)  # a new day, a new allowance
    log.record(*_batch(1), MODEL)
    log.close()
    assert len(_lines(tmp_path)) == kept + 1
    assert warnings[1].endswith(f"({30 - kept} images were not logged)"), warnings


def test_without_max_day_bytes_nothing_is_dropped(tmp_path) -> None:
    log = RequestLog(tmp_path, "page")
    for seed in range(10):
        log.record(*_batch(3, seed=seed), MODEL)
    log.close()
    assert len(_lines(tmp_path)) == 30


def test_the_window_is_the_newest_records_or_those_since_a_moment(tmp_path) -> None:
    clock = _Clock(dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC))
    log = RequestLog(tmp_path, "page", clock=clock)
    for hour in range(5):
        clock.now = dt.datetime(2026, 3, 1, 10 + hour, tzinfo=dt.UTC)
        log.record(*_batch(2, seed=hour), MODEL)
    log.close()
    with (tmp_path / sorted(os.listdir(tmp_path))[0]).open("a") as cut_short:
        cut_short.write('{"time": "2026-03-01T15:00:00Z", "model"')  # a write a full disk cut
    newest = read_window(tmp_path, last=3)
    assert len(newest) == 3 and newest["time"].is_monotonic_increasing
    assert newest["time"].iloc[-1] == pd.Timestamp("2026-03-01T14:00Z")
    recent = read_window(
        tmp_path, since=parse_duration("2h"), now=dt.datetime(2026, 3, 1, 14, 30, tzinfo=dt.UTC)
    )
    assert len(recent) == 4  # 13:00 and 14:00, two images each
    assert len(read_window(tmp_path)) == 10


@pytest.mark.parametrize("text", ["", "2", "0h", "2 weeks", "-1d", "1.5h"])
def test_a_duration_that_is_not_one_is_one_line(text: str) -> None:
    from kernel.cli import CommandError

    with pytest.raises(CommandError, match=r"expected a duration such as 30m, 24h or 7d"):
        parse_duration(text)


def test_a_missing_log_folder_says_how_to_make_one(tmp_path) -> None:
    from kernel.cli import CommandError

    with pytest.raises(CommandError, match=r"no request log there; serve a model"):
        read_window(tmp_path / "none")


def test_a_partial_last_line_of_a_writer_gone_is_cut_when_the_next_log_opens(tmp_path) -> None:
    """SIGKILL can end a write of many pages part-way: the next log opened on this host cuts
    the dead writer's fragment; a live writer's file and another host's are left alone."""
    import socket

    host = socket.gethostname()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(gone.stdout)
    whole = b'{"a":1}\n' * 3000  # past one block of the backwards search
    day = "requests-2026-12-07"
    files = {
        "dead": tmp_path / f"{day}-mlserver-101010-{host}-{dead_pid}.1-001.jsonl",
        "live": tmp_path / f"{day}-mlserver-101010-{host}-{os.getpid()}.1-001.jsonl",
        "other host": tmp_path / f"{day}-mlserver-101010-elsewhere-{dead_pid}.1-001.jsonl",
        "whole": tmp_path / f"{day}-page-101010-{host}-{dead_pid}.2-001.jsonl",
    }
    for name, path in files.items():
        path.write_bytes(whole + (b"" if name == "whole" else b'{"a":2,"b"'))
    warnings: list[str] = []
    RequestLog(tmp_path, "mlserver", warn=warnings.append).close()
    assert files["dead"].read_bytes() == whole
    assert files["whole"].read_bytes() == whole
    for name in ("live", "other host"):
        assert files[name].read_bytes().endswith(b'{"a":2,"b"'), name
    assert warnings == [f"{files['dead'].name}: cut the 10 bytes of a line its writer (pid "
                        f"{dead_pid}) left"]  # fmt: skip


def test_a_process_that_exits_without_closing_its_log_writes_it_to_its_end(tmp_path) -> None:
    """MLServer stopped with SIGTERM exits without unloading its model: what its log held
    is written on the way out, not lost with the writer's daemon thread."""
    code = (
        "import sys, numpy as np\n"
        "from monitor.request_log import RequestLog, ServedModel\n"
        "log = RequestLog(sys.argv[1], 'mlserver')\n"
        "for _ in range(500):\n"
        "    log.record(np.zeros((1, 28, 28)), np.full((1, 10), 0.1), ServedModel('m', '1'))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    assert len(_lines(tmp_path)) == 500


def test_lines_made_by_the_encoder_process_are_the_writer_threads(tmp_path) -> None:
    clock = _Clock(dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC))
    folders = {where: tmp_path / where for where in ("thread", "process")}
    for where, folder in folders.items():
        log = RequestLog(folder, "mlserver", clock=clock, encode_in_subprocess=where == "process")
        for seed in range(3):
            log.record(*_batch(4, seed=seed), MODEL)
            log.flush()
        log.close()
    unlike_by_design = ("request",)  # a random id per request
    thread, process = (
        [{k: v for k, v in line.items() if k not in unlike_by_design} for line in _lines(folder)]
        for folder in folders.values()
    )
    assert len(thread) == 12 and process == thread


def test_an_encoder_process_that_dies_leaves_the_writer_thread_to_encode(tmp_path) -> None:
    warnings: list[str] = []
    log = RequestLog(tmp_path, "mlserver", warn=warnings.append, encode_in_subprocess=True)
    log.record(*_batch(2), MODEL)
    log.flush()
    log._encoder._process.kill()  # the OOM killer, say
    log._encoder._process.wait()
    log.record(*_batch(3), MODEL)
    log.close()
    assert len(_lines(tmp_path)) == 5
    assert len(warnings) == 1 and "encoder process failed" in warnings[0], warnings
