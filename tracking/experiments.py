"""``python -m tracking.experiments`` (``make compare``): the DVC experiments side by side,
trimmed to what tells them apart.

``dvc exp show --only-changed`` in 120 columns, keeping only the headline test figures
(accuracy, loss, macro F1, the int8 model's accuracy, and ``drawn.accuracy``, the accuracy
on the drawn test set, once an experiment has one) and the params of every section of
``params.yaml``, of which ``--only-changed`` leaves those that differ. Everything else
(secondary figures, gate settings, file hashes, the time) is dropped, whatever its file,
so a new metric or file cannot push the params off the screen.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

WIDTH = 120
# column names as DVC shows them: a nested figure's keys joined by dots
HEADLINE = ("accuracy", "loss", "macro_f1", "int8_accuracy", "drawn.accuracy")


def param_sections(params_file: Path = Path("params.yaml")) -> tuple[str, ...]:
    """The sections of the workspace's ``params.yaml``: a param that differs is shown
    whatever its section (``feedback.train_weight`` as much as ``train.epochs``)."""
    import yaml

    try:
        raw = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        raw = None  # DVC says what is wrong with the file in its own line
    return tuple(raw) if isinstance(raw, dict) else ()


def drop_pattern(sections: Sequence[str]) -> str:
    """DVC's ``--drop`` regex (matched at a column name's start): every column but the
    experiment's name, the headline figures and the params of ``sections``."""
    kept = ["Experiment$", *(f"{re.escape(name)}$" for name in HEADLINE)]
    if sections:
        kept.append(rf"({'|'.join(re.escape(name) for name in sections)})\.")
    return f"(?!{'|'.join(kept)})"


def command(extra: Sequence[str] = ()) -> list[str]:
    """The ``dvc exp show`` command line (``extra``: more of its options, e.g. ``-A``)."""
    dvc = [sys.executable, "-m", "dvc"]  # this environment's, on PATH or not
    drop = drop_pattern(param_sections())
    return [*dvc, "exp", "show", "--no-pager", "--only-changed", "--drop", drop, *extra]


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    env = {**os.environ, "COLUMNS": os.environ.get("COMPARE_COLUMNS", str(WIDTH))}
    return subprocess.run(command(args), env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
