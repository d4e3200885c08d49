"""A window of the request log: the last N answers, or those since a moment, as a DataFrame."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pandas as pd

from kernel.cli import CommandError
from monitor.descriptors import ANSWER_FIELDS, DESCRIPTORS
from monitor.request_log import FILE_PREFIX, FILE_SUFFIX, file_day

_DURATION = re.compile(r"^(\d+)\s*([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
REQUIRED = ("time", "model", "version", *DESCRIPTORS, *ANSWER_FIELDS)


def parse_duration(text: str) -> dt.timedelta:
    """``30m``, ``24h``, ``7d`` as a timedelta; anything else is one line saying so."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise CommandError(f"--since {text!r}: expected a duration such as 30m, 24h or 7d")
    return dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def read_window(
    folder: Path,
    *,
    last: int | None = None,
    since: dt.timedelta | None = None,
    now: dt.datetime | None = None,
) -> pd.DataFrame:
    """The log's records, oldest first: the newest ``last`` of them, or those ``since`` ago.

    A line that is not a whole record (a write cut short by a full disk) is skipped.
    """
    if not folder.is_dir():
        raise CommandError(
            f"{folder}: no request log there; serve a model (make serve) or open the page "
            "(make demo) and send it digits, or point monitor.log_dir at the log"
        )
    start = (now or dt.datetime.now(dt.UTC)) - since if since else None
    files = sorted(folder.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}"))
    if start is not None:
        files = [f for f in files if (file_day(f) or dt.date.max) >= start.date()]
    records = []
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and all(key in record for key in REQUIRED):
                    records.append(record)
    frame = pd.DataFrame.from_records(records, columns=None if records else list(REQUIRED))
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    frame = frame.sort_values(["time", *(["index"] if "index" in frame else [])], kind="stable")
    if start is not None:
        frame = frame[frame["time"] >= pd.Timestamp(start)]
    if last is not None:
        frame = frame.tail(last)
    return frame.reset_index(drop=True)
