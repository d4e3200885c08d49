"""The project's root, and the paths of the pipeline's files as dvc.yaml's ``vars`` give them.

dvc.yaml is the one place an artifact's path is written; code that needs one asks here
instead of writing it again. Nothing is read until a function is called.
"""

from __future__ import annotations

from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PIPELINE_FILE = "dvc.yaml"


def pipeline_vars(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """dvc.yaml's ``vars`` under ``root``, merged into one mapping of names to paths.

    An entry that is not a mapping (a params file DVC reads the vars from) holds no path
    of ours and is passed over. ``FileNotFoundError`` when ``root`` has no dvc.yaml.
    """
    pipeline = yaml.safe_load((root / PIPELINE_FILE).read_text(encoding="utf-8"))
    merged: dict[str, str] = {}
    for entry in (pipeline or {}).get("vars", []):
        if isinstance(entry, dict):
            merged.update({name: str(value) for name, value in entry.items()})
    return merged


def artifact(name: str, root: Path = PROJECT_ROOT) -> str:
    """The path dvc.yaml's ``vars`` give artifact ``name``, relative to the project root."""
    return pipeline_vars(root)[name]
