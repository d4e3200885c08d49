"""The correction record: one JSON object per image, in a file named by the image's digest.

    {"digest": "<32 hex digits>", "label": 4, "answer": 7, "model": "mnist-digits",
     "version": "3", "alias": "champion", "page": "<page id>", "time": "2026-12-06T12:00:00Z",
     "image": [784 pixel values 0..255]}

``label`` is the digit the person says it was, ``answer`` the model's; ``image`` is the 28x28
input the model saw, row by row. ``digest`` is the image's digest as the request log names it
(sha256 of its float32 bytes, 32 hex digits), so the same drawing is one record however often
it is sent. ``model``, ``version``, ``alias``, ``page`` and ``time`` say who answered and when;
each may be missing or null (records written before page ids existed have no ``page``).
Anything else in the object makes it no record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUFFIX = ".json"
DIGEST_LENGTH = 32
PIXELS = 28 * 28
DIGITS = 10
# what a record must hold, and what it may hold besides (strings, or null)
REQUIRED = ("digest", "label", "answer", "image")
OPTIONAL = ("model", "version", "alias", "page", "time")
# the order of the keys in a file: the order the page's server has always written them
_ORDER = ("digest", "label", "answer", "model", "version", "alias", "page", "time", "image")


class RecordError(ValueError):
    """What makes a file no correction record, in one line."""


@dataclass(frozen=True)
class CorrectionRecord:
    """One person's word on one image: the digit it was (``label``) and the model's answer."""

    digest: str
    label: int
    answer: int
    image: np.ndarray  # (784,) float64, 0..255, as the file holds it
    model: str | None = None
    version: str | None = None
    alias: str | None = None
    page: str | None = None
    time: str | None = None

    @property
    def file_name(self) -> str:
        return file_name(self.digest)


def image_digest(image: np.ndarray) -> str:
    """The image as the model saw it, hashed: sha256 of its float32 bytes, 32 hex digits
    (the digest the request log gives the same image)."""
    data = np.ascontiguousarray(image, dtype=np.float32).tobytes()
    return hashlib.sha256(data).hexdigest()[:DIGEST_LENGTH]


def file_name(digest: str) -> str:
    """The name of the file that holds the record of the image with this digest."""
    return f"{digest}{SUFFIX}"


def digest_of(name: str) -> str | None:
    """The digest a file name stands for, or None when the name is no record's."""
    digest = name.removesuffix(SUFFIX)
    return digest if name.endswith(SUFFIX) and is_digest(digest) else None


def is_digest(text: object) -> bool:
    return (
        isinstance(text, str)
        and len(text) == DIGEST_LENGTH
        and all(c in "0123456789abcdef" for c in text)
    )


def make_record(
    image: np.ndarray,
    label: int,
    answer: int,
    *,
    model: str | None = None,
    version: str | None = None,
    alias: str | None = None,
    page: str | None = None,
    now: dt.datetime | None = None,
) -> CorrectionRecord:
    """The record of ``image`` (28x28 or 784 values, as the model saw it), checked."""
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    record = CorrectionRecord(
        digest=image_digest(image),
        label=label,
        answer=answer,
        # three decimals: what a drawn pixel needs, and a file a third the size
        image=np.asarray([round(float(v), 3) for v in np.ravel(image)], dtype=np.float64),
        model=model,
        version=version,
        alias=alias,
        page=page,
        time=when.isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    return check(record)


def record_bytes(record: CorrectionRecord) -> bytes:
    """The record as its file holds it: compact JSON on one line."""
    fields = {key: getattr(record, key) for key in _ORDER}
    fields["image"] = [float(v) for v in record.image]
    return (json.dumps(fields, separators=(",", ":")) + "\n").encode()


def parse_record(data: bytes | str, name: str | None = None) -> CorrectionRecord:
    """The record a file holds; ``RecordError`` (one line) for anything else. With ``name``,
    the file must be named by the digest it holds."""
    try:
        fields = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise RecordError(f"not JSON ({_shown(str(err), 60)})") from None
    if not isinstance(fields, dict):
        raise RecordError(f"not a JSON object but {type(fields).__name__}")
    unknown = sorted(set(fields) - set(REQUIRED) - set(OPTIONAL))
    missing = [key for key in REQUIRED if key not in fields]
    if unknown or missing:
        said = f"unknown keys {_shown(unknown)}" if unknown else f"no {', '.join(missing)}"
        raise RecordError(f"{said}; expected the keys {list(_ORDER)}")
    record = CorrectionRecord(
        digest=fields["digest"],
        label=fields["label"],
        answer=fields["answer"],
        image=check_pixels(fields["image"]),
        **{key: fields.get(key) for key in OPTIONAL},
    )
    _check_fields(record)
    if name is not None and name != record.file_name:
        raise RecordError(f"the file is not named by the digest it holds ({record.digest})")
    return record


def read_record(path: Path) -> CorrectionRecord:
    """The record in ``path``; ``RecordError`` when it holds none, ``OSError`` when unreadable."""
    return parse_record(path.read_bytes(), path.name)


def check(record: CorrectionRecord) -> CorrectionRecord:
    """``record`` when each of its fields is what a record holds; else ``RecordError``."""
    check_pixels(record.image)
    _check_fields(record)
    return record


def _check_fields(record: CorrectionRecord) -> None:
    """Every field but the image, which ``check_pixels`` has seen."""
    check_digit(record.label, "label")
    check_digit(record.answer, "answer")
    if not is_digest(record.digest):
        raise RecordError(
            f"digest = {_shown(record.digest)}: expected {DIGEST_LENGTH} hex digits (0-9, a-f)"
        )
    for key in OPTIONAL:
        value = getattr(record, key)
        if value is not None and not isinstance(value, str):
            raise RecordError(f"{key} = {_shown(value)}: expected a string or null")


def check_digit(value: object, key: str) -> int:
    """``value`` when it is a digit 0..9 (an integer, not ``true``); else ``RecordError``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < DIGITS:
        raise RecordError(f"{key} = {_shown(value)}: expected a digit 0..9")
    return value


def check_pixels(values: object) -> np.ndarray:
    """784 pixel values 0..255 as a (784,) float64 array; ``RecordError`` for anything else.
    Each is checked before it becomes a float: a huge integer is out of range, not a crash."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, list) or len(values) != PIXELS:
        size = len(values) if isinstance(values, list) else type(values).__name__
        raise RecordError(f"image has {size} values; expected a list of {PIXELS} numbers")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise RecordError(f"image holds {_shown(v)}, which is not a number")
        if not (isinstance(v, int) or math.isfinite(v)) or not 0 <= v <= 255:
            raise RecordError(f"image values must be pixel values 0..255; found {_shown(v)}")
    return np.asarray(values, dtype=np.float64)


def _shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut short: a message quoting a file's content stays one short line."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long for Python to write out
        return "a number of thousands of digits"
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."
