"""The request log: one JSON line per image a served model answered, appended, never rewritten.

Each process that answers (an MLServer, the page's server) writes files of its own, so two
servers on two ports, or a server and its restart, never write into one file:

    <folder>/requests-<YYYY-MM-DD>-<source>-<HHMMSS>-<host>-<pid>.<log>-<n>.jsonl

A file is closed and the next one begun at midnight (UTC) and past ``rotate_bytes``; files
of days more than ``keep_days`` ago are deleted when a file is begun (0 keeps them all).
pandas reads a file with ``read_json(path, lines=True)``; ``monitor.window`` reads many.

Logging never fails or holds up an answer: ``record`` copies the arrays onto a queue and
returns; a thread of its own gathers what comes within ``BATCH_SECONDS``, computes the
descriptors of all of it at once and appends (``flush`` and ``close`` write at once). A
folder that cannot be written (full disk, no permission) gives one warning line, and answers
go on unlogged until a write succeeds again; records that find the queue full are dropped
and counted the same way, and so are records past ``max_day_bytes`` written in one day
(UTC) by one writer, when that is set: a client that can make a server answer without end
(the page's, which anyone on the machine can post to) fills no disk. Raw pixels are written
only when ``keep_pixels`` is set. With a ``shipper`` (team mode: ``monitor.log_settings`` makes
one from ``tracking.team_copies``) the writer also copies its files to the team's store.

Each server opens its log through ``monitor.log_settings.open_request_log``, from
``params.yaml``'s ``monitor`` section.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import queue
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from feedback.record import image_digest
from monitor.descriptors import DESCRIPTORS, answers, describe

FILE_PREFIX = "requests-"
FILE_SUFFIX = ".jsonl"
FILE_MODE = 0o640
DEFAULT_ROTATE_BYTES = 32 * 2**20
# images waiting for the writer; past it a burst is dropped rather than held in memory
QUEUE_IMAGES = 65536
# the writer gathers what comes within this long and describes and writes it in one go
BATCH_SECONDS = 0.25
_STOP = object()
_INSTANCES = itertools.count(1)


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
    ) -> None:
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
        self._queue: queue.Queue = queue.Queue()
        self._queued = 0  # images on the queue; a bound the queue's own size cannot give
        self._lock = threading.Lock()
        self._dropped = 0
        self._problem: str | None = None
        self._shipper = shipper
        self._shipping_problem: str | None = None
        self._file: Path | None = None
        self._day: dt.date | None = None
        self._number = 0
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

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
            self._queue.put((self._clock(), model, images, probabilities))
        except Exception as err:  # an answer must never fail for its log
            self._complain(f"an answer could not be logged ({type(err).__name__}: {err})")

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (waiting at most ``timeout`` seconds), then stop the writer."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written (for tests and shutdown)."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    # the writer thread

    def _run(self) -> None:
        while True:
            batch, control = self._collect()
            if batch:
                self._write_batch(batch)
            if control is _STOP:
                if self._file is not None:
                    self._ship(self._file, finished=True)
                return
            if isinstance(control, threading.Event):
                control.set()

    def _collect(self) -> tuple[list[tuple], object]:
        """The answers queued within ``BATCH_SECONDS`` of the first, and a control item
        (stop, or a flush's event) if one came; described and written together, they cost
        the answering thread little of the interpreter's time."""
        item = self._queue.get()
        batch: list[tuple] = []
        deadline = time.monotonic() + BATCH_SECONDS
        while True:
            if item is _STOP or isinstance(item, threading.Event):
                return batch, item
            batch.append(item)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return batch, None
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                return batch, None

    def _write_batch(self, batch: list[tuple]) -> None:
        try:
            # a batch across midnight is written to the files of its two days
            for _, same_day in itertools.groupby(batch, key=lambda item: item[0].date()):
                items = list(same_day)
                self._write(self._lines(items), items[-1][0])
        except Exception as err:  # the writer outlives any one record
            self._complain(f"an answer could not be logged ({type(err).__name__}: {err})")
        finally:
            with self._lock:
                self._queued -= sum(len(images) for _, _, images, _ in batch)

    def _lines(self, items: list[tuple]) -> bytes:
        """The JSON lines of several answers, their descriptors computed in one pass."""
        described = describe(np.concatenate([images for _, _, images, _ in items]))
        answered = answers(np.concatenate([probabilities for _, _, _, probabilities in items]))
        lines = []
        offset = 0
        for when, model, images, _ in items:
            request = uuid.uuid4().hex[:16]
            stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            for index, image in enumerate(images):
                row = offset + index
                record: dict[str, object] = {
                    "time": stamp,
                    "source": self.source,
                    "model": model.name,
                    "version": model.version,
                    "alias": model.alias,
                    "request": request,
                    "index": index,
                    # the digest a correction of the same image is filed under
                    "digest": image_digest(image),
                }
                record.update({name: _plain(described[name][row]) for name in DESCRIPTORS})
                record.update({name: _plain(values[row]) for name, values in answered.items()})
                if self.keep_pixels:
                    record["pixels"] = _pixels(image)
                lines.append(json.dumps(record, separators=(",", ":")))
            offset += len(images)
        return ("\n".join(lines) + "\n").encode()

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
