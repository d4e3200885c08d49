"""The feedback store: the folder of correction records (``feedback.store`` in params.yaml).

    data/feedback-store/           accepted corrections: what the feedback stage gathers
        <digest>.json
        pending/                   waiting for a person's review (git and DVC pass it by)
            <digest>.json
            dropped/               turned down: nothing reads them, the image is not taken again

Each record is written whole (a temporary file linked to its name, never replacing one),
readable by its owner only: they are people's drawings. An image has one word in the store,
the first: once it is accepted, waiting or dropped, the same image is not kept again.

The store used to be the project's top-level ``feedback/`` folder, which now holds this code;
``old_store_problem`` says when records are still there, and ``move_old_store`` moves them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from feedback.record import (
    SUFFIX,
    CorrectionRecord,
    RecordError,
    digest_of,
    file_name,
    read_record,
    record_bytes,
)

PENDING = "pending"
DROPPED = "dropped"
# Records are people's drawings: readable by the one who serves the page only.
RECORD_MODE = 0o600
FOLDER_MODE = 0o700
# Corrections waiting at most (about 70 MB): past it nothing more is taken until a person
# has reviewed them, so a flood fills no disk.
MAX_PENDING = 10_000
# git and DVC pass by a folder holding a file of these names that says "*": what waits for
# review changes neither `git status` nor the feedback stage's inputs
IGNORED_BY = (".gitignore", ".dvcignore")
# where the store was before it moved under data/, relative to the project root
OLD_STORE = "feedback"
MOVE_COMMAND = "python -m demo.feedback move-store"
REVIEW_COMMAND = "python -m demo.feedback review"


class ReviewQueueFull(OSError):
    """``MAX_PENDING`` corrections wait already."""


class MoveIncomplete(ValueError):
    """The old store's pending folder holds files that are no corrections: left for a person."""


class FeedbackStore:
    """The store's folder: accepted records at its top, ``pending/`` and ``pending/dropped/``."""

    def __init__(self, folder: str | os.PathLike[str], max_pending: int = MAX_PENDING) -> None:
        self.folder = Path(folder)
        self.pending = self.folder / PENDING
        self.dropped = self.pending / DROPPED
        self.max_pending = max_pending

    def pending_folder(self) -> Path:
        """The pending folder, made (owner only, passed by git and DVC) if it is not there."""
        for folder in (self.pending, self.dropped):
            folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        for name in IGNORED_BY:
            if not (self.pending / name).exists():
                write_new(self.pending / name, b"*\n")
        return self.pending

    def knows(self, digest: str) -> bool:
        """Whether the image is accepted, waiting, or was dropped: the first word on it stays."""
        name = file_name(digest)
        return any((folder / name).exists() for folder in (self.folder, self.pending, self.dropped))

    def keep(self, record: CorrectionRecord) -> Path | None:
        """Keep ``record`` for review; its file, or None when its image is known already."""
        if self.knows(record.digest):
            return None
        if self.pending_count() >= self.max_pending:
            raise ReviewQueueFull(
                f"{self.max_pending} corrections wait for review already; nothing more is kept "
                f"until a person has reviewed them ({REVIEW_COMMAND})"
            )
        target = self.pending_folder() / record.file_name
        return target if write_new(target, record_bytes(record)) else None

    def count(self) -> int:
        """How many corrections were accepted: what the feedback stage gathers."""
        return _records_in(self.folder)

    def pending_count(self) -> int:
        """How many corrections wait for review."""
        return _records_in(self.pending)

    def accepted(self) -> list[CorrectionRecord]:
        """The accepted records, by digest; ``RecordError`` naming the first file that is none."""
        return [_read(path) for path in _record_files(self.folder)]

    def waiting(self) -> list[tuple[Path, CorrectionRecord | RecordError]]:
        """Each file waiting for review, with its record or what makes it none."""
        found = []
        for path in _record_files(self.pending):
            try:
                found.append((path, read_record(path)))
            except RecordError as err:
                found.append((path, err))
        return found

    def accept(self, paths: Iterable[Path]) -> int:
        """Move waiting files into the store, where the feedback stage reads them; how many
        are new there (an image accepted already keeps its first label)."""
        added = 0
        for path in paths:
            try:
                os.link(path, self.folder / path.name)  # never replaces an accepted one
                added += 1
            except FileExistsError:
                pass
            path.unlink()
        return added

    def drop(self, paths: Iterable[Path]) -> int:
        """Move waiting files to the dropped folder, where nothing reads them; how many."""
        self.pending_folder()
        moved = 0
        for path in paths:
            os.replace(path, self.dropped / path.name)
            moved += 1
        return moved


def _record_files(folder: Path) -> list[Path]:
    """The files in ``folder`` named as records are, by name (no temporary ones)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"*{SUFFIX}") if not p.name.startswith("."))


def _read(path: Path) -> CorrectionRecord:
    try:
        return read_record(path)
    except RecordError as err:
        raise RecordError(f"{path}: not a correction the page's server wrote ({err})") from None


def _records_in(folder: Path) -> int:
    try:
        with os.scandir(folder) as entries:
            return sum(1 for e in entries if e.name.endswith(SUFFIX) and not e.name[0] == ".")
    except FileNotFoundError:
        return 0


def write_new(target: Path, data: bytes) -> bool:
    """Write ``target`` whole, mode ``RECORD_MODE``, unless it exists: never replaced, never
    half-written (a temporary file, linked to its name). False when it existed."""
    fd, partial = tempfile.mkstemp(prefix=".partial-", dir=target.parent)
    try:
        os.fchmod(fd, RECORD_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(partial, target)  # never replaces: the first correction stays
        except FileExistsError:
            return False
    finally:
        os.unlink(partial)
    return True


def old_store_problem(root: Path, store: Path) -> str | None:
    """One line naming the command that moves them, when corrections are still where the store
    used to be (``OLD_STORE`` under the project ``root``); None when nothing is there."""
    old = root / OLD_STORE
    if _same_folder(old, store) or not ((old / PENDING).is_dir() or _record_files(old)):
        return None
    counts = _old_counts(FeedbackStore(old))
    return (
        f"corrections are still in {old}/, where the feedback store used to be ({counts}); "
        f"the store is {store}/ now: move them there with {MOVE_COMMAND}"
    )


def move_old_store(root: Path, store: Path) -> str:
    """Move what the old store holds into ``store``, each record to the same part (accepted,
    waiting, dropped); an image ``store`` has a word on already keeps that word. What was
    moved, in one line; ``MoveIncomplete`` when files that are no records are left there."""
    old, new = FeedbackStore(root / OLD_STORE), FeedbackStore(store)
    if _same_folder(old.folder, new.folder):
        return f"{new.folder} is the store already: nothing to move"
    moved = known = 0
    for source, target in _old_parts(old, new):
        for path in _record_files(source):
            digest = digest_of(path.name)
            if digest is not None and new.knows(digest):
                known += 1
                path.unlink()
                continue
            target.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
            _move_record(path, target / path.name)
            moved += 1
    _remove_empty_pending(old)
    left = "" if not known else f"; {known} {new.folder} had already (its word on them stays)"
    return f"moved {moved} corrections from {old.folder} to {new.folder}{left}"


def _old_parts(old: FeedbackStore, new: FeedbackStore) -> Iterator[tuple[Path, Path]]:
    yield old.folder, new.folder
    if old.pending.is_dir():
        new.pending_folder()  # made with its ignore files before anything waits in it
        yield old.pending, new.pending
        yield old.dropped, new.dropped


def _old_counts(old: FeedbackStore) -> str:
    return (
        f"{old.count()} accepted, {old.pending_count()} waiting, {_records_in(old.dropped)} dropped"
    )


def _same_folder(one: Path, other: Path) -> bool:
    return one.resolve() == other.resolve()


def _move_record(path: Path, target: Path) -> None:
    """``path`` to ``target``, never replacing a file there, across file systems too."""
    try:
        os.link(path, target)
    except FileExistsError:
        pass  # the same name is the same image: the one in the store stays
    except OSError:  # another file system: a copy, written whole, mode RECORD_MODE
        write_new(target, path.read_bytes())
    path.unlink()


def _remove_empty_pending(old: FeedbackStore) -> None:
    """The old pending folder once it holds nothing but its ignore files and temporaries;
    ``MoveIncomplete`` when it holds more, so nobody's files are lost unseen."""
    for folder in (old.dropped, old.pending):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name in IGNORED_BY or path.name.startswith(".partial-"):
                path.unlink()
        try:
            folder.rmdir()
        except OSError:
            names = sorted(path.name for path in folder.iterdir())
            raise MoveIncomplete(
                f"{folder} still holds files that are no corrections ({', '.join(names[:3])}"
                f"{', ...' if len(names) > 3 else ''}); see to them, then remove the folder"
            ) from None
