"""The feedback store's folder: records kept once per image, waiting, accepted or dropped;
and corrections left where the store used to be, named in one line and moved on request."""

from __future__ import annotations

import stat

import numpy as np
import pytest

from feedback.record import RecordError, make_record
from feedback.store import (
    FeedbackStore,
    MoveIncomplete,
    ReviewQueueFull,
    move_old_store,
    old_store_problem,
)


def _record(row: int, label: int = 3):
    image = np.zeros((28, 28), dtype=np.float32)
    image[row : row + 12, 10:14] = 255
    return make_record(image, label, 7, page="p" * 32)


def test_a_record_waits_once_per_image_and_the_first_word_stays(tmp_path) -> None:
    store = FeedbackStore(tmp_path / "store", max_pending=2)
    kept = store.keep(_record(2))
    assert kept == store.pending / _record(2).file_name
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.pending.stat().st_mode) == 0o700
    assert store.keep(_record(2, label=5)) is None, "the same image: the first label stays"
    assert store.keep(_record(6)) is not None
    with pytest.raises(ReviewQueueFull, match="2 corrections wait for review already"):
        store.keep(_record(10))
    assert (store.count(), store.pending_count()) == (0, 2)
    accepted, dropped = (store.pending / _record(row).file_name for row in (2, 6))
    assert store.accept([accepted]) == 1 and store.drop([dropped]) == 1
    assert (store.count(), store.pending_count()) == (1, 0)
    for row in (2, 6):  # accepted, dropped: neither waits again
        assert store.knows(_record(row).digest) and store.keep(_record(row)) is None
    assert [r.digest for r in store.accepted()] == [_record(2).digest]


def test_a_file_in_the_store_that_is_no_record_is_named_with_why(tmp_path) -> None:
    store = FeedbackStore(tmp_path / "store")
    store.keep(_record(2))
    bad = store.pending / f"{'f' * 32}.json"
    bad.write_text("{}")
    said = {path.name: read for path, read in store.waiting()}
    assert isinstance(said[bad.name], RecordError) and "no digest" in str(said[bad.name])
    store.folder.joinpath(bad.name).write_text("not json")
    with pytest.raises(RecordError, match=r"store/f{32}\.json: not a correction the page's"):
        store.accepted()


def _old_store(root):
    """Corrections where the store used to be: row 2 accepted, 6 waiting, 10 dropped."""
    old = FeedbackStore(root / "feedback")
    for row in (2, 6, 10):
        old.keep(_record(row))
    old.accept([old.pending / _record(2).file_name])
    old.drop([old.pending / _record(10).file_name])
    return old


def test_nothing_where_the_store_used_to_be_is_no_problem(tmp_path) -> None:
    (tmp_path / "feedback").mkdir()
    (tmp_path / "feedback" / "record.py").write_text("# the code that lives there now\n")
    assert old_store_problem(tmp_path, tmp_path / "data" / "feedback-store") is None
    old = _old_store(tmp_path)
    assert old_store_problem(tmp_path, old.folder) is None, "the store is set to the old place"


def test_corrections_where_the_store_used_to_be_are_one_line_naming_the_move(tmp_path) -> None:
    _old_store(tmp_path)
    new = tmp_path / "data" / "feedback-store"
    assert old_store_problem(tmp_path, new) == (
        f"corrections are still in {tmp_path / 'feedback'}/, where the feedback store used to "
        f"be (1 accepted, 1 waiting, 1 dropped); the store is {new}/ now: move them there with "
        "python -m demo.feedback move-store"
    )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "feedback" / "pending").mkdir(parents=True)
    assert "(0 accepted, 0 waiting, 0 dropped)" in old_store_problem(tmp_path / "other", new)


def test_the_move_keeps_each_part_and_the_stores_word_on_an_image_it_knows(tmp_path) -> None:
    old = _old_store(tmp_path)
    new = FeedbackStore(tmp_path / "data" / "feedback-store")
    new.folder.mkdir(parents=True)
    (new.folder / "README.md").write_text("# The feedback store\n")
    new.keep(_record(6, label=9))  # the new store has a word on the waiting image already
    said = move_old_store(tmp_path, new.folder)
    assert said == (
        f"moved 2 corrections from {old.folder} to {new.folder}; 1 {new.folder} had already "
        "(its word on them stays)"
    )
    assert old_store_problem(tmp_path, new.folder) is None
    assert [r.digest for r in new.accepted()] == [_record(2).digest]
    ((_, waiting),) = new.waiting()
    assert (waiting.digest, waiting.label) == (_record(6).digest, 9), "the new store's word"
    assert [p.name for p in new.dropped.glob("*.json")] == [_record(10).file_name]
    for name in (".gitignore", ".dvcignore"):
        assert (new.pending / name).read_text() == "*\n"
    assert not old.pending.exists() and not list(old.folder.glob("*.json"))


def test_files_that_are_no_records_stop_the_move_and_stay(tmp_path) -> None:
    old = _old_store(tmp_path)
    (old.pending / "notes.txt").write_text("mine\n")
    with pytest.raises(MoveIncomplete, match=r"pending still holds files that are no correct"):
        move_old_store(tmp_path, tmp_path / "data" / "feedback-store")
    assert (old.pending / "notes.txt").read_text() == "mine\n"
    assert FeedbackStore(tmp_path / "data" / "feedback-store").count() == 1
