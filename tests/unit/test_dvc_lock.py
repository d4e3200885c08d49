"""The committed dvc.lock records the code the pipeline runs as it is in the tree.

A stale entry means the lock was written before a code change: a fresh clone's
``make repro`` would rerun stages and leave ``dvc.lock`` modified. Run ``make repro``
and commit ``dvc.lock``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kernel.paths import PROJECT_ROOT

CODE = ("stages", "kernel", "tracking", "digits_predict")


def changed_code_deps(root: Path) -> dict[str, list[str]]:
    """Per stage, the code deps ``dvc status`` reports as changed against dvc.lock."""
    dvc = Path(sys.executable).with_name("dvc")
    done = subprocess.run(
        [str(dvc), "status", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    changed: dict[str, list[str]] = {}
    for stage, entries in json.loads(done.stdout or "{}").items():
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            for path in entry.get("changed deps", {}):
                if path.split("/")[0] in CODE:
                    changed.setdefault(stage, []).append(path)
    return changed


def test_dvc_lock_matches_the_code_in_the_tree() -> None:
    assert changed_code_deps(PROJECT_ROOT) == {}, "stale dvc.lock: run make repro, commit dvc.lock"
