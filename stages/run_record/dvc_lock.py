"""What the workspace's ``dvc.lock`` says: each stage's deps and outs with their md5, and
whether a file still holds what the lock recorded.

DVC 3 records a file's md5 as the md5 of its bytes, and a folder's as ``<md5>.dir`` (the
md5 of a listing in DVC's cache), which is not recomputed here. The lock is read as it
stands when a stage runs: ``dvc repro`` writes each stage's entry as soon as that stage
ran, so the stages upstream of the running one are current, the running one's and those
downstream are still the last run's. A missing or unreadable lock reads as empty.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = "dvc.lock"
FOLDER_SUFFIX = ".dir"


@dataclass(frozen=True)
class LockedStage:
    """One stage's entry: path → md5 of each dep and out (files and folders)."""

    deps: Mapping[str, str]
    outs: Mapping[str, str]


def read_lock(root: Path) -> dict[str, LockedStage]:
    """The stages of ``root``/dvc.lock by name; empty when there is no readable lock."""
    import yaml

    try:
        text = (root / LOCK_FILE).read_text(encoding="utf-8")
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        stages = yaml.load(text, Loader=loader)["stages"]
        return {
            str(name): LockedStage(_hashes(entry.get("deps")), _hashes(entry.get("outs")))
            for name, entry in stages.items()
        }
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, KeyError, AttributeError):
        return {}


def _hashes(entries: Iterable[Mapping] | None) -> dict[str, str]:
    return {
        str(entry["path"]): str(entry["md5"])
        for entry in entries or ()
        if isinstance(entry, Mapping) and "path" in entry and "md5" in entry
    }


def file_md5(path: str | os.PathLike[str]) -> str:
    """The md5 of a file's bytes, as DVC 3 records it."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def text_md5(text: str) -> str:
    """The md5 DVC records for a file holding ``text`` in UTF-8."""
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def is_folder(md5: str) -> bool:
    return md5.endswith(FOLDER_SUFFIX)


def holds(root: Path, path: str, md5: str) -> bool:
    """Whether the file ``root``/``path`` exists with the md5 ``md5`` (never for a folder)."""
    if is_folder(md5):
        return False
    try:
        return file_md5(root / path) == md5
    except OSError:
        return False


def producers(lock: Mapping[str, LockedStage], paths: Iterable[str]) -> dict[str, str]:
    """The outs of the stages that wrote ``paths`` and, in turn, of those that wrote their
    deps: everything upstream of a stage whose inputs are ``paths``, by path → md5."""
    wanted, found, seen = {_normal(p) for p in paths}, {}, set()
    while wanted:
        path = wanted.pop()
        for name, stage in lock.items():
            if name in seen or not any(_within(path, _normal(out)) for out in stage.outs):
                continue
            seen.add(name)
            found.update(stage.outs)
            wanted.update(_normal(dep) for dep in stage.deps)
    return found


def _within(path: str, out: str) -> bool:
    """``path`` is the out, or a file of the out's folder (``data/prepared/test.npz``)."""
    return path == out or path.startswith(out + "/")


def _normal(path: str | os.PathLike[str]) -> str:
    return Path(os.path.normpath(path)).as_posix()
