"""The review's folder, replaced whole: a reader sees the last review or the new one, and a
failed run leaves the last one as it was.

The new folder is written beside the target under a hidden staging name, which .dvcignore
and .gitignore skip, then swapped in (``kernel.atomic.staged_folder``). A folder that is
there but is not an earlier review (no ``index.md``) is never replaced.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from kernel.atomic import staged_folder
from kernel.cli import CommandError

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
    with staged_folder(target) as staging:
        yield staging
        (staging / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
