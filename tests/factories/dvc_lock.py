"""A ``dvc.lock`` as DVC 3 writes it, for the files of a test's folder."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

# a stage's deps and outs, by their paths in the folder
Entry = tuple[Sequence[str], Sequence[str]]


def _hashed(root: Path, path: str) -> dict[str, object]:
    target = root / path
    if target.is_dir():
        # DVC's folder md5 is of a listing in its cache; no reader here recomputes it
        listing = "".join(sorted(p.name for p in target.iterdir()))
        md5 = hashlib.md5(listing.encode()).hexdigest() + ".dir"
        return {"path": path, "hash": "md5", "md5": md5, "nfiles": len(list(target.iterdir()))}
    data = target.read_bytes()
    return {"path": path, "hash": "md5", "md5": hashlib.md5(data).hexdigest(), "size": len(data)}


def write_lock(root: Path, stages: Mapping[str, Entry]) -> Path:
    """``root``/dvc.lock with each stage's deps and outs hashed as they are now."""
    lock = {
        "schema": "2.0",
        "stages": {
            name: {
                "cmd": f"python -m stages.{name}",
                "deps": [_hashed(root, path) for path in deps],
                "outs": [_hashed(root, path) for path in outs],
            }
            for name, (deps, outs) in stages.items()
        },
    }
    path = root / "dvc.lock"
    path.write_text(yaml.safe_dump(lock, sort_keys=False), encoding="utf-8")
    return path
