"""``python -m tracking.experiments`` (``make compare``): the DVC experiments side by side,
trimmed to what tells them apart.

``dvc exp show --only-changed`` in 120 columns, keeping only the headline test figures
(accuracy, loss, macro F1, the int8 model's accuracy, and ``drawn.accuracy``, the accuracy
on the drawn test set, once an experiment has one) and the params of every section of
``params.yaml``, of which ``--only-changed`` leaves those that differ. Everything else
(secondary figures, gate settings, file hashes, the time) is dropped, whatever its file,
so a new metric or file cannot push the params off the screen.

With ``--runs`` (``make compare RUN=1``) a last column gives each row's MLflow run (its id's
first 8 characters), still in 120 columns: the newest run tagged with the md5 that the
row's dvc.lock gives ``models/run.json`` (train tags it), else with the model digest the run
file holds (read from the workspace or DVC's cache), else for an experiment the newest run
tagged with its name; ``-`` when the store holds none.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.cli import CommandError
from kernel.paths import pipeline_vars
from tracking.run_tags import DVC_EXP_NAME_TAG, MODEL_DIGEST_TAG, output_md5_tag

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


# --- the run column (--runs) ---------------------------------------------------------------

RUNS_FLAG = "--runs"
RUN_HEADER = "Run"
RUN_ID_CHARS = 8
GAP = "   "  # between two columns, as DVC's table has it
NO_RUN = "-"
RULES = frozenset("─━═")
TREE = ("├──", "└──")
PARAMS_FILE = "params.yaml"
DVC_CACHE = Path(".dvc") / "cache" / "files" / "md5"
SEARCH_LIMIT = 5000


@dataclass(frozen=True)
class Row:
    """A row of ``dvc exp show``: the first word of its Experiment cell (``workspace``, a
    branch, a commit's or an experiment's short rev), the experiment's name, the md5 of its
    run file and the MLflow experiment its params name."""

    label: str
    name: str | None
    run_file_md5: str | None
    experiment: str | None


def _short(rev: str) -> str:
    return rev[:7] if re.fullmatch(r"[0-9a-f]{40}", rev) else rev


def _row(label: str, name: str | None, data: Mapping[str, Any] | None, run_file: str) -> Row:
    data = data or {}
    hashed = (data.get("deps") or {}).get(run_file) or (data.get("outs") or {}).get(run_file)
    params = ((data.get("params") or {}).get(PARAMS_FILE) or {}).get("data") or {}
    experiment = (params.get("train") or {}).get("experiment_name")
    return Row(label, name, (hashed or {}).get("hash"), experiment)


def experiment_rows(shown: Iterable[Mapping[str, Any]], run_file: str) -> list[Row]:
    """The rows of ``dvc exp show --json``'s answer, labelled as its table labels them."""
    rows = []
    for baseline in shown:
        label = baseline.get("name") or _short(baseline["rev"])
        rows.append(_row(label, None, baseline.get("data"), run_file))
        for experiment in baseline.get("experiments") or []:
            revs = experiment.get("revs") or []
            if revs:  # DVC shows the first (the tip) of a legacy range
                name = experiment.get("name") or revs[0].get("name")
                rows.append(_row(_short(revs[0]["rev"]), name, revs[0].get("data"), run_file))
    return rows


def _model_digest(row: Row, run_file: str) -> str | None:
    """The model digest of the row's run file: the workspace's, or the copy in DVC's cache."""
    paths = [DVC_CACHE / row.run_file_md5[:2] / row.run_file_md5[2:]] if row.run_file_md5 else []
    if row.label == "workspace":
        paths.insert(0, Path(run_file))
    for path in paths:
        try:
            # the run file's field (stages.run_record.runs.RunFile), which its run is tagged with
            return str(json.loads(path.read_text(encoding="utf-8"))["model_sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def run_of(row: Row, runs: Sequence[Any], run_file: str) -> Any | None:
    """The row's run among ``runs`` (MLflow runs of its experiment, newest first)."""
    tagged = output_md5_tag(run_file)
    digest = _model_digest(row, run_file)
    for matches in (
        lambda run: row.run_file_md5 is not None and run.data.tags.get(tagged) == row.run_file_md5,
        lambda run: digest is not None and run.data.tags.get(MODEL_DIGEST_TAG) == digest,
        lambda run: row.name is not None and run.data.tags.get(DVC_EXP_NAME_TAG) == row.name,
    ):
        found = [run for run in runs if matches(run)]
        if found:  # of several runs of one model, the one its experiment's name tags
            named = [run for run in found if run.data.tags.get(DVC_EXP_NAME_TAG) == row.name]
            return (named or found)[0]
    return None


def find_runs(rows: Sequence[Row], run_file: str, uri: str | None = None) -> dict[str, str]:
    """Each row's run id (its first 8 characters) by the row's label; none for a row whose
    run the store does not hold. A SQLite store not yet made holds none."""
    from tracking.store import connect, tracking_uri

    names = {row.experiment for row in rows if row.experiment}
    uri = uri or tracking_uri()
    store = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not names or (uri.startswith("sqlite:///") and not Path(store).is_file()):
        return {}
    import mlflow

    client = mlflow.MlflowClient(connect(uri))
    ids = {}
    for name in names:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            ids[name] = experiment.experiment_id
    if not ids:
        return {}
    runs = client.search_runs(
        list(ids.values()), order_by=["attributes.start_time DESC"], max_results=SEARCH_LIMIT
    )
    found = {}
    for row in rows:
        mine = [run for run in runs if run.info.experiment_id == ids.get(row.experiment or "")]
        run = run_of(row, mine, run_file)
        if run is not None:
            found[row.label] = run.info.run_id[:RUN_ID_CHARS]
    return found


def _label(line: str) -> str | None:
    words = line.split()
    if words and words[0] in TREE:
        words = words[1:]
    return words[0] if words else None


def with_run_column(table: str, labels: Iterable[str], run_ids: Mapping[str, str]) -> str:
    """DVC's table with a run column at its right: the header ``Run`` on the header's first
    line, each row's run id (``-`` for none) on its first line, the rules drawn on."""
    lines = [line.rstrip() for line in table.splitlines()]
    width = max((len(line) for line in lines), default=0)
    known, out, rules = set(labels), [], 0
    header_named = False
    for line in lines:
        if line.strip() and set(line.strip()) <= RULES:
            rules += 1
            rule = line.strip()[0]
            out.append(line.ljust(width, rule) + rule * (len(GAP) + RUN_ID_CHARS))
            continue
        if rules == 1 and not header_named:
            cell, header_named = RUN_HEADER, True
        elif rules >= 2 and _label(line) in known:
            cell = run_ids.get(_label(line) or "", NO_RUN)
        else:
            cell = ""
        out.append((line.ljust(width) + GAP + cell).rstrip() if cell else line)
    return "\n".join(out) + ("\n" if out else "")


def show_with_runs(args: Sequence[str], env: Mapping[str, str]) -> int:
    """``dvc exp show``'s table as ``main`` prints it, with the run column: the table drawn
    that much narrower, the rows read from ``dvc exp show --json``, their runs from the store."""
    dvc = command()[:3]
    width = int(env.get("COLUMNS") or WIDTH)
    narrower = {**env, "COLUMNS": str(width - len(GAP) - RUN_ID_CHARS)}
    listing = subprocess.run(
        [*dvc, "exp", "show", "--json", *args], env=narrower, capture_output=True, text=True
    )
    table = subprocess.run(command(args), env=narrower, stdout=subprocess.PIPE, text=True)
    if table.returncode != 0 or listing.returncode != 0:
        sys.stdout.write(table.stdout)
        sys.stderr.write(listing.stderr)
        return table.returncode or listing.returncode
    try:
        run_file = pipeline_vars(Path.cwd())["run_file"]
        rows = experiment_rows(json.loads(listing.stdout), run_file)
        run_ids = find_runs(rows, run_file)
    except (OSError, ValueError, KeyError, TypeError, CommandError) as err:
        print(f"compare: no MLflow runs shown: {err}", file=sys.stderr)
        rows, run_ids = [], {}
    sys.stdout.write(with_run_column(table.stdout, [row.label for row in rows], run_ids))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    env = {**os.environ, "COLUMNS": os.environ.get("COMPARE_COLUMNS", str(WIDTH))}
    if RUNS_FLAG in args:
        return show_with_runs([arg for arg in args if arg != RUNS_FLAG], env)
    return subprocess.run(command(args), env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
