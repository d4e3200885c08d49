"""The correction record: made from an image, written, read back the same; each thing that
makes a file no record is one line naming it."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from feedback.record import (
    CorrectionRecord,
    RecordError,
    digest_of,
    image_digest,
    make_record,
    parse_record,
    read_record,
    record_bytes,
)
from monitor.request_log import image_digest as request_log_digest

NOON = dt.datetime(2026, 12, 6, 12, 0, 0, tzinfo=dt.UTC)


def _image() -> np.ndarray:
    image = np.zeros((28, 28), dtype=np.float32)
    image[4:24, 12:16] = 255
    image[3, 3] = 12.34567  # a pixel the page's scaling left between two values
    return image


def _record(**change) -> CorrectionRecord:
    fields = {"model": "mnist-digits", "version": "4", "alias": "champion", "page": "p" * 32}
    return make_record(_image(), 4, 7, now=NOON, **{**fields, **change})


def _fields(**change) -> dict:
    """A record's JSON object, with ``change`` (a value of None removes the key)."""
    fields = json.loads(record_bytes(_record()))
    fields.update(change)
    return {key: value for key, value in fields.items() if value is not None}


def test_a_record_is_written_and_read_back_the_same(tmp_path) -> None:
    record = _record()
    data = record_bytes(record)
    assert data.endswith(b"}\n") and data.count(b"\n") == 1, "one compact line"
    assert list(json.loads(data)) == [
        "digest", "label", "answer", "model", "version", "alias", "page", "time", "image",
    ]  # fmt: skip
    path = tmp_path / record.file_name
    path.write_bytes(data)
    again = read_record(path)
    assert again.image.shape == (784,) and np.array_equal(again.image, record.image)
    assert (again.digest, again.label, again.answer, again.time) == (
        record.digest, 4, 7, "2026-12-06T12:00:00Z",
    )  # fmt: skip
    assert (again.model, again.version, again.alias, again.page) == (
        "mnist-digits", "4", "champion", "p" * 32,
    )  # fmt: skip
    assert record_bytes(again) == data


def test_the_digest_is_the_request_logs_of_the_image_the_model_saw_and_names_the_file() -> None:
    record = _record()
    assert record.digest == image_digest(_image()) == request_log_digest(_image())
    assert record.file_name == f"{record.digest}.json"
    assert digest_of(record.file_name) == record.digest
    assert record.image[3 * 28 + 3] == 12.346, "pixels kept to three decimals"


@pytest.mark.parametrize("name", ["README.md", "x.json", f"{'A' * 32}.json", f"{'a' * 31}.json"])
def test_a_name_that_is_no_digest_is_no_records(name) -> None:
    assert digest_of(name) is None


def test_a_record_without_page_or_answerer_is_still_one() -> None:
    """Records written before the server handed out page ids have no ``page``."""
    fields = _fields(page=None, model=None, version=None, alias=None, time=None)
    record = parse_record(json.dumps(fields), f"{fields['digest']}.json")
    assert record.page is None and record.model is None


BAD = [
    ("not json", "not JSON ("),
    ("[1, 2]", "not a JSON object but list"),
    (_fields(extra=1), "unknown keys ['extra']; expected the keys"),
    (_fields(label=None), "no label; expected the keys"),
    (_fields(digest="x" * 32), "digest = 'xxxxxxxx"),
    (_fields(digest="ABC"), "expected 32 hex digits"),
    (_fields(label=10), "label = 10: expected a digit 0..9"),
    (_fields(label=True), "label = True: expected a digit 0..9"),
    (_fields(label="3"), "label = '3': expected a digit 0..9"),
    (_fields(answer=-1), "answer = -1: expected a digit 0..9"),
    (_fields(image=[0] * 100), "image has 100 values; expected a list of 784 numbers"),
    (_fields(image=[[0] * 28] * 28), "image has 28 values; expected a list of 784"),
    (_fields(image=[300] * 784), "image values must be pixel values 0..255; found 300"),
    (_fields(image=[False] * 784), "image holds False, which is not a number"),
    (_fields(image=[10**400] * 784), "image values must be pixel values 0..255; found 1000"),
    (_fields(page=7), "page = 7: expected a string or null"),
]


@pytest.mark.parametrize(("content", "said"), BAD, ids=[said for _, said in BAD])
def test_what_is_no_record_is_one_line_naming_it(content, said) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    with pytest.raises(RecordError) as raised:
        parse_record(text)
    message = str(raised.value)
    assert said in message and "\n" not in message and len(message) < 200, message


def test_a_record_in_a_file_of_another_name_is_none() -> None:
    fields = _fields()
    with pytest.raises(RecordError, match="not named by the digest it holds"):
        parse_record(json.dumps(fields), f"{'0' * 32}.json")


def test_a_record_is_checked_as_it_is_made() -> None:
    with pytest.raises(RecordError, match="label = 12"):
        make_record(_image(), 12, 7)
    with pytest.raises(RecordError, match="image has 100 values"):
        make_record(np.zeros(100, np.float32), 1, 7)
    with pytest.raises(RecordError, match="version = 4: expected a string"):
        make_record(_image(), 1, 7, version=4)
