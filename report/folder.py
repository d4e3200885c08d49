"""The review's folder, replaced whole: a reader sees the last review or the new one, and a
failed run leaves the last one as it was.

The new folder is written beside the target under a hidden temporary name (``.NAME.*.tmp``,
which .dvcignore skips), then swapped in by two renames. A folder
that is there but is not an earlier review (no ``index.md``) is never replaced.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kernel.cli import CommandError
from kernel.signals import deferred_signals

INDEX = "index.md"
# the review is made, not committed: git leaves the folder out wherever it is put
GITIGNORE = "# made by python -m report: not committed\n*\n"


def check_target(target: Path) -> None:
    """Refuse an ``--out`` that is a file, or a folder with other things than a review in it."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise CommandError(f"--out {target}: not a folder: expected a folder for the review")
    if target.is_dir() and any(target.iterdir()) and not (target / INDEX).is_file():
        raise CommandError(
            f"--out {target}: a folder that holds no earlier review ({INDEX}): expected a new "
            "folder or one python -m report wrote, which it replaces whole"
        )


@contextlib.contextmanager
def replaced_folder(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it becomes ``target``, else it is removed."""
    check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield staging
        (staging / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        staging.chmod(0o755)  # mkdtemp makes 0700: a review is for everyone who reads the repo
        _swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    old = None
    with deferred_signals():
        if target.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old.tmp", dir=target.parent)
            )
            os.replace(target, old / target.name)
        try:
            os.replace(staging, target)
        except BaseException:
            if old is not None:
                os.replace(old / target.name, target)
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
