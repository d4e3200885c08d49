"""The request log: one JSON line per image a served model answered, appended, never rewritten.

Each process that answers (an MLServer, the page's server) writes files of its own, so two
servers on two ports, or a server and its restart, never write into one file:

    <folder>/requests-<YYYY-MM-DD>-<source>-<HHMMSS>-<host>-<pid>.<log>-<n>.jsonl

A file is closed and the next one begun at midnight (UTC) and past ``rotate_bytes``; files
of days more than ``keep_days`` ago are deleted when a file is begun (0 keeps them all).
pandas reads a file with ``read_json(path, lines=True)``; ``monitor.window`` reads many.
A writer killed in the middle of a write (SIGKILL) may leave part of a line at the end of
its file; the next log opened on this host cuts it, and readers skip it until then.

Logging never fails or holds up an answer: ``record`` copies the arrays into a pending list
and returns; a thread of its own wakes every ``BATCH_SECONDS`` (at once for ``flush`` and
``close``), takes the whole list, computes the descriptors of all of it at once and appends.
It is never woken per answer: under load a wake-up per answer handed the interpreter's lock
back and forth between the answering thread and the writer, costing each answer more than
its record. A folder that cannot be written (full disk, no permission, a slow mount) gives
one warning line, and answers go on unlogged until a write succeeds again; records that find
``QUEUE_IMAGES`` images already pending are dropped and counted the same way (so memory
stays bounded however slow the folder), and so are records past ``max_day_bytes`` written in one day
(UTC) by one writer, when that is set: a client that can make a server answer without end
(the page's, which anyone on the machine can post to) fills no disk. Raw pixels are written
only when ``keep_pixels`` is set. With ``encode_in_subprocess`` (MLServer's runtime) the
descriptors and JSON are made by ``python -m monitor.encoder``, a process of their own, and
the writer thread only hands the arrays over and writes. With a ``shipper`` (team mode:
``monitor.log_settings`` makes one from ``tracking.team_copies``) the writer also copies its
files to the team's store.

Each server opens its log through ``monitor.log_settings.open_request_log``, from
``params.yaml``'s ``monitor`` section.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from feedback.record import image_digest
from monitor.descriptors import DESCRIPTORS, answers, describe

FILE_PREFIX = "requests-"
FILE_SUFFIX = ".jsonl"
FILE_MODE = 0o640
DEFAULT_ROTATE_BYTES = 32 * 2**20
# images waiting for the writer; past it a burst is dropped rather than held in memory: 16,384
# images hold 51 MB, five seconds of answers at 3,000 a second
QUEUE_IMAGES = 16384
# the writer takes what came within this long and describes and writes it in one go
BATCH_SECONDS = 0.25
_STOP = object()
_INSTANCES = itertools.count(1)
# the logs of this process still open: written to their end when the process exits (a server
# stopped with SIGTERM ends without unloading its model; the writer is a daemon thread)
_OPEN_LOGS: weakref.WeakSet[RequestLog] = weakref.WeakSet()


@atexit.register
def _close_open_logs() -> None:
    for log in list(_OPEN_LOGS):
        log.close()


@dataclass(frozen=True)
class ServedModel:
    """Which model answered: the registry's name, version and the alias it was served as."""

    name: str
    version: str
    alias: str | None = None


class LogCopier(Protocol):
    """What copies the log's files elsewhere as they grow (``tracking.team_copies``'s
    ``ArtifactShipper`` in team mode); its errors are the log's to report."""

    def due(self, path: Path) -> bool: ...

    def ship(self, path: Path) -> None: ...

    def finish(self) -> None: ...


def _warn(message: str) -> None:
    print(f"request log: warning: {message}", file=sys.stderr, flush=True)


class RequestLog:
    """Appends a record per answered image to files in ``folder`` (see the module's text)."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        source: str,
        *,
        keep_pixels: bool = False,
        rotate_bytes: int = DEFAULT_ROTATE_BYTES,
        keep_days: int = 0,
        warn: Callable[[str], None] = _warn,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        shipper: LogCopier | None = None,
        max_day_bytes: int = 0,
        encode_in_subprocess: bool = False,
    ) -> None:
        """``encode_in_subprocess``: the descriptors and JSON of each batch are made by a
        process of their own (a busy server's: see ``_Encoder``), not by the writer thread."""
        self.folder = Path(folder)
        self.source = source
        self.keep_pixels = keep_pixels
        self.rotate_bytes = rotate_bytes
        self.max_day_bytes = max_day_bytes  # 0: no cap
        self._day_written: tuple[dt.date | None, int] = (None, 0)
        self._capped_day: dt.date | None = None  # the day max_day_bytes was reached
        self.keep_days = keep_days
        self._warn = warn
        self._clock = clock
        started = clock()
        # a process may hold two logs at once (a served model switching versions)
        instance = next(_INSTANCES)
        self._writer = f"{source}-{started:%H%M%S}-{socket.gethostname()}-{os.getpid()}.{instance}"
        self._pending: list[tuple] = []  # answers the writer has not taken yet
        self._controls: list[object] = []  # a stop, or flushes' events, to act on once written
        self._wake = threading.Event()  # set for a control: the writer does not wait out a batch
        self._queued = 0  # images pending or being written: what QUEUE_IMAGES bounds
        self._lock = threading.Lock()
        self._dropped = 0
        self._problem: str | None = None
        self._shipper = shipper
        self._shipping_problem: str | None = None
        self._file: Path | None = None
        self._day: dt.date | None = None
        self._number = 0
        self._encoder = _Encoder(warn) if encode_in_subprocess else None
        _cut_lines_of_gone_writers(self.folder, warn)
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()
        _OPEN_LOGS.add(self)

    def record(self, images: np.ndarray, probabilities: np.ndarray, model: ServedModel) -> None:
        """Queue one answer (a batch of images and their probabilities); never raises."""
        try:
            images = np.array(images, dtype=np.float32, copy=True).reshape(-1, 28, 28)
            probabilities = np.array(probabilities, dtype=np.float64, copy=True)
            with self._lock:
                if self._queued + len(images) > QUEUE_IMAGES:
                    self._dropped += len(images)
                    if self._dropped == len(images):
                        self._warn(
                            f"the writer of {self.folder} is {QUEUE_IMAGES} images behind; "
                            "answers go on unlogged until it catches up"
                        )
                    return
                self._queued += len(images)
                self._pending.append((self._clock(), model, images, probabilities))
        except Exception as err:  # an answer must never fail for its log
            self._complain(f"an answer could not be logged ({type(err).__name__}: {err})")

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending (waiting at most ``timeout`` seconds), then stop the writer."""
        self._control(_STOP)
        self._thread.join(timeout)
        _OPEN_LOGS.discard(self)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything recorded so far is written (for tests and shutdown)."""
        done = threading.Event()
        self._control(done)
        done.wait(timeout)

    def _control(self, item: object) -> None:
        with self._lock:
            self._controls.append(item)
        self._wake.set()

    # the writer thread

    def _run(self) -> None:
        while True:
            batch, controls = self._collect()
            if batch:
                self._write_batch(batch)
            for control in controls:
                if control is _STOP:
                    if self._file is not None:
                        self._ship(self._file, finished=True)
                    if self._encoder is not None:
                        self._encoder.close()
                    return
                if isinstance(control, threading.Event):
                    control.set()

    def _collect(self) -> tuple[list[tuple], list[object]]:
        """What was recorded since the last batch, and the controls asked for meanwhile:
        after ``BATCH_SECONDS``, or at once when a control wakes the writer. Everything
        recorded before a flush or close was asked for is in the batch taken with it."""
        self._wake.wait(BATCH_SECONDS)
        self._wake.clear()
        with self._lock:
            batch, self._pending = self._pending, []
            controls, self._controls = self._controls, []
        return batch, controls

    def _write_batch(self, batch: list[tuple]) -> None:
        try:
            # a batch across midnight is written to the files of its two days
            for _, same_day in itertools.groupby(batch, key=lambda item: item[0].date()):
                items = list(same_day)
                self._write(self._encoded(items), items[-1][0])
        except Exception as err:  # the writer outlives any one record
            self._complain(f"an answer could not be logged ({type(err).__name__}: {err})")
        finally:
            with self._lock:
                self._queued -= sum(len(images) for _, _, images, _ in batch)

    def _encoded(self, items: list[tuple]) -> bytes:
        """The JSON lines of several answers, made here or by the encoder's process."""
        stamps = [(when, model, len(images)) for when, model, images, _ in items]
        images = np.concatenate([images for _, _, images, _ in items])
        probabilities = np.concatenate([probabilities for _, _, _, probabilities in items])
        batch = (stamps, images, probabilities, self.source, self.keep_pixels)
        if self._encoder is not None:
            encoded = self._encoder.encode(batch)
            if encoded is not None:
                return encoded
        return encode_lines(*batch)

    def _within_cap(self, data: bytes, day: dt.date) -> bytes:
        """The whole lines of ``data`` that fit in what is left of ``max_day_bytes`` today;
        the rest, and every line after them that day, are dropped and counted, with one
        warning."""
        if self.max_day_bytes <= 0:
            return data
        written = self._day_written[1] if self._day_written[0] == day else 0
        lines = data.splitlines(keepends=True)
        kept = 0
        for line in lines:
            if written + len(line) > self.max_day_bytes:
                written = self.max_day_bytes  # full: no shorter line slips in later today
                break
            written += len(line)
            kept += 1
        self._day_written = (day, written)
        if kept < len(lines):
            with self._lock:
                self._dropped += len(lines) - kept
            if self._capped_day != day:
                self._capped_day = day
                self._warn(
                    f"{self.folder}: this log wrote its {self.max_day_bytes} bytes for {day} "
                    "(max_day_bytes); answers go on unlogged until the day ends"
                )
        return b"".join(lines[:kept])

    def _write(self, data: bytes, when: dt.datetime) -> None:
        data = self._within_cap(data, when.date())
        if not data:
            return
        try:
            path = self._current_file(when, len(data))
            # one write on an O_APPEND descriptor: whole lines, never interleaved with another
            # writer's, and nothing before them ever rewritten
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            try:
                written = os.write(fd, data)
            finally:
                os.close(fd)
            if written != len(data):
                raise OSError(28, "No space left on device (a short write)", str(path))
        except OSError as err:
            # a write cut short may have left part of a line: the next begins a new file
            self._file = None
            where = err.filename or self.folder
            self._complain(f"cannot write {where} ({err.strerror or err}); answers go on unlogged")
            return
        # on a day whose cap was reached the lines that fit are no recovery: said the next day
        if (self._problem is not None or self._dropped) and self._capped_day != when.date():
            dropped = f" ({self._dropped} images were not logged)" if self._dropped else ""
            self._warn(f"writing {self.folder} again{dropped}")
            self._problem, self._dropped = None, 0
        if self._shipper is not None and self._shipper.due(path):
            self._ship(path)

    def _ship(self, path: Path, finished: bool = False) -> None:
        """Copy ``path`` to the team's store; one warning when that stops working."""
        if self._shipper is None:
            return
        try:
            if path.exists():
                self._shipper.ship(path)
            if finished:
                self._shipper.finish()
        except Exception as err:  # the local log is the record; the copy can wait
            if self._shipping_problem is None:
                text = str(err).strip().splitlines()[0] if str(err).strip() else ""
                self._shipping_problem = f"{type(err).__name__}: {text}"
                self._warn(
                    f"cannot copy {path.name} to the team's store ({self._shipping_problem}); "
                    f"the log goes on in {self.folder}"
                )
            return
        if self._shipping_problem is not None:
            self._shipping_problem = None
            self._warn("copying the log to the team's store again")

    def _current_file(self, when: dt.datetime, size: int) -> Path:
        day = when.date()
        full = (
            self._file is not None
            and self._file.exists()
            and self._file.stat().st_size + size > self.rotate_bytes
        )
        if self._file is None or day != self._day or full:
            if self._file is not None:
                self._ship(self._file)  # its last lines, before the next file begins
            self.folder.mkdir(parents=True, exist_ok=True)
            self._number = self._number + 1 if day == self._day else 1
            while (self.folder / self._name(day)).exists():  # one a failed write left
                self._number += 1
            self._day = day
            self._file = self.folder / self._name(day)
            self._prune(day)
        return self._file

    def _name(self, day: dt.date) -> str:
        return f"{FILE_PREFIX}{day.isoformat()}-{self._writer}-{self._number:03d}{FILE_SUFFIX}"

    def _prune(self, today: dt.date) -> None:
        if self.keep_days <= 0:
            return
        oldest = today - dt.timedelta(days=self.keep_days)
        for path in self.folder.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}"):
            day = file_day(path)
            if day is not None and day < oldest:
                with contextlib.suppress(OSError):  # another server removed it first
                    path.unlink()

    def _complain(self, message: str) -> None:
        """Warn once when logging stops working; quiet until it works again."""
        if self._problem is None:
            self._problem = message
            self._warn(message)


def encode_lines(
    stamps: list[tuple[dt.datetime, ServedModel, int]],
    images: np.ndarray,
    probabilities: np.ndarray,
    source: str,
    keep_pixels: bool,
) -> bytes:
    """The JSON lines of several answers (each ``stamps`` entry: when, which model, how many
    images), their descriptors computed in one pass."""
    described = describe(images)
    answered = answers(probabilities)
    lines = []
    offset = 0
    for when, model, count in stamps:
        request = uuid.uuid4().hex[:16]
        stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for index in range(count):
            row = offset + index
            record: dict[str, object] = {
                "time": stamp,
                "source": source,
                "model": model.name,
                "version": model.version,
                "alias": model.alias,
                "request": request,
                "index": index,
                # the digest a correction of the same image is filed under
                "digest": image_digest(images[row]),
            }
            record.update({name: _plain(described[name][row]) for name in DESCRIPTORS})
            record.update({name: _plain(values[row]) for name, values in answered.items()})
            if keep_pixels:
                record["pixels"] = _pixels(images[row])
            lines.append(json.dumps(record, separators=(",", ":")))
        offset += count
    return ("\n".join(lines) + "\n").encode()


class _Encoder:
    """``encode_lines`` in a process of its own (``python -m monitor.encoder``). In a server
    answering thousands of images a second, the writer thread's describing and JSON-making
    took the interpreter's lock from the thread answering: a sixth of the answers at 32
    clients. Here the writer thread only gathers the arrays and waits, the lock released,
    for the lines. A plain child process, not multiprocessing's, which would import the
    server's main module again in it (all of MLServer: 200 MB). Started on the first batch;
    it ends when the log closes, or when this process is gone (its pipe closes). Should it
    fail, one warning, and the writer thread makes the lines itself from then on.
    """

    def __init__(self, warn: Callable[[str], None]) -> None:
        self._warn = warn
        self._process: subprocess.Popen | None = None
        self._to: Connection | None = None
        self._back: Connection | None = None
        self._failed = False

    def encode(self, batch: tuple) -> bytes | None:
        """The lines, or None when the process cannot make them (the caller does)."""
        if self._failed:
            return None
        try:
            if self._process is None:
                self._start()
            assert self._to is not None and self._back is not None
            self._to.send(batch)
            return self._back.recv_bytes()
        except (OSError, EOFError, ValueError, AssertionError) as err:
            self._failed = True
            self._warn(
                f"the request log's encoder process failed ({type(err).__name__}: {err}); "
                "the writer thread encodes the lines from now on"
            )
            self.close()
            return None

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "monitor.encoder"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._to = Connection(os.dup(self._process.stdin.fileno()), readable=False)
        self._back = Connection(os.dup(self._process.stdout.fileno()), writable=False)
        self._process.stdin.close()
        self._process.stdout.close()

    def close(self) -> None:
        for end in (self._to, self._back):
            if end is not None:
                end.close()  # the encoder reads the end of its input, and exits
        self._to = self._back = None
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


def _cut_lines_of_gone_writers(folder: Path, warn: Callable[[str], None]) -> None:
    """Cut back to its last whole line each file of this host whose writer is gone and left
    part of a line at its end. A write is one ``write`` call, but the kernel lets a fatal
    signal (SIGKILL, the OOM killer) end a write of many pages part-way: a server killed
    under load can leave a partial line, which the next log opened here removes (a reader
    skips it meanwhile). A live writer's files, and other hosts', are never touched."""
    host = socket.gethostname()
    for path in sorted(folder.glob(f"{FILE_PREFIX}*-{host}-*{FILE_SUFFIX}")):
        pid = _writer_pid(path, host)
        if pid is None or _running(pid):
            continue
        try:
            with open(path, "r+b") as file:
                size = file.seek(0, os.SEEK_END)
                file.seek(max(size - 1, 0))
                if file.read(1) in (b"", b"\n"):  # empty, or ends with a whole line
                    continue
                kept = _past_last_newline(file, size)
                file.truncate(kept)
        except OSError as err:
            warn(f"cannot cut the partial last line of {path} ({err.strerror or err})")
            continue
        warn(f"{path.name}: cut the {size - kept} bytes of a line its writer (pid {pid}) left")


def _past_last_newline(file: BinaryIO, size: int, block: int = 65536) -> int:
    """The offset just past the file's last newline (0 when it has none)."""
    end = size
    while end > 0:
        start = max(0, end - block)
        file.seek(start)
        cut = file.read(end - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def _writer_pid(path: Path, host: str) -> int | None:
    """The pid in a log file's name (``...-<host>-<pid>.<n>-<nnn>.jsonl``), or None."""
    rest = path.name.rsplit(f"-{host}-", 1)[-1]
    try:
        return int(rest.split(".", 1)[0])
    except ValueError:
        return None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def file_day(path: Path) -> dt.date | None:
    """The day a log file was begun, from its name; None for a name of another kind."""
    stem = path.name.removeprefix(FILE_PREFIX)
    try:
        return dt.date.fromisoformat(stem[:10])
    except ValueError:
        return None


def _plain(value: np.generic) -> float | int:
    """A numpy number as JSON's: integers stay integers, floats keep 6 significant digits."""
    if isinstance(value, np.integer):
        return int(value)
    return float(f"{float(value):.6g}")


def _pixels(image: np.ndarray) -> list[float] | list[int]:
    flat = image.ravel()
    if np.all(flat == np.round(flat)):
        return [int(v) for v in flat]
    return [float(f"{v:.4g}") for v in flat]
