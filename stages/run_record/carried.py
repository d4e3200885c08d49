"""Carrying into a new run the records of the stages that DVC will skip for its model.

train starts a run for each model it trains, and export, evaluate and quantize add their
records to it; but DVC runs a stage only when one of its deps or outs changed. When train
writes the same model again (a fresh clone rebuilding the committed results, a param that
changes nothing), a stage whose outputs are all in place is skipped, and its record would
be missing from the new run. So train, once its run holds the training, gives the run the
record of each stage after it that ``dvc.lock`` shows was made for this very model (its
entry lists the run file train has just written, by md5) and whose files still are what
the lock recorded: read back from the files the stage wrote, logged by the functions the
stage logs with (``records``), under the same names, and tagged ``record.<stage>`` with
where it came from. Should DVC rerun the stage after all (another of its deps changed),
the stage logs over it and tags ``ran``.

Nothing is carried, and nothing fails, without a readable dvc.yaml and dvc.lock (a first
run), for a run file other than the one dvc.yaml names, or from a file that cannot be read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kernel.paths import pipeline_vars
from stages.run_record import metric_names
from stages.run_record.dvc_lock import LockedStage, holds, is_folder, text_md5
from stages.run_record.records import (
    DRAWN,
    EVALUATE,
    EXPORT,
    QUANTIZE,
    log_evaluation,
    log_int8,
    log_parity,
    log_texts,
    tag_output_md5s,
)
from tracking.store import retry_locked

_UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError)


def carried_note(sources: tuple[str, ...]) -> str:
    """The ``record.<stage>`` tag of a carried record: the files it was read from."""
    return f"carried from {', '.join(sources)} (dvc.lock: the stage was up to date for this model)"


@dataclass(frozen=True)
class Record:
    """A stage's record, read from its files and checked, ready to be logged."""

    sources: tuple[str, ...]  # the files it was read from, as dvc.yaml's vars name them
    log: Callable[[str], None]  # logs it into the active run; its argument: the record tag


def carry_records(
    root: Path, lock: Mapping[str, LockedStage], run_file: Path, run_file_text: str
) -> list[str]:
    """Log into the active run the record of each stage after train that ``lock`` shows
    up to date for the run file ``run_file_text`` (about to be written to ``run_file``);
    the names of the stages carried.

    ``root`` holds dvc.yaml and the stages' files: the working directory DVC runs the
    stage in (the workspace, or an experiment's copy of it)."""
    try:
        where = pipeline_vars(root)
    except (*_UNREADABLE, yaml.YAMLError):  # no dvc.yaml, or none to read: nothing to carry
        return []
    named = where.get("run_file")
    if named is None or (root / named).resolve() != Path(run_file).resolve():
        return []
    md5 = text_md5(run_file_text)
    carried = []
    for stage, read in READERS.items():
        entry = lock.get(stage)
        if entry is None or entry.deps.get(named) != md5:
            continue  # the stage will run for this model, or is not in the pipeline
        files = {path: digest for path, digest in entry.outs.items() if not is_folder(digest)}
        if not all(holds(root, path, digest) for path, digest in files.items()):
            continue  # an output is missing or changed: DVC will run the stage
        try:
            record = read(root, where)
        except _UNREADABLE:
            continue
        record.log(carried_note(record.sources))
        tag_output_md5s(files)
        carried.append(stage)
    return carried


def _json(path: Path) -> tuple[str, Any]:
    text = path.read_text(encoding="utf-8")
    return text, json.loads(text)


def _failures(report: Mapping[str, Any]) -> tuple[str, ...]:
    failures = report["failures"]
    if not isinstance(failures, list):
        raise TypeError(f"failures is {type(failures).__name__}, not a list")
    return tuple(str(failure) for failure in failures)


def _log_texts(texts: Mapping[str, str]) -> None:
    retry_locked(lambda: log_texts(texts), "logging the reports")


def _evaluation(root: Path, where: Mapping[str, str]) -> Record:
    """evaluate's: metrics.json (with the drawn test set's figures), classes.json, figures."""
    _, metrics = _json(root / where["metrics"])
    _, table = _json(root / where["classes"])
    figures = {path.name: path for path in sorted((root / where["figures"]).glob("*.png"))}
    # what log_evaluation computes, so that a malformed report fails here, before any logging
    headline = {key: value for key, value in metrics.items() if key != DRAWN}
    metric_names.evaluation_metrics(headline, table["per_class"])
    for value in (metrics.get(DRAWN) or {}).values():
        float(value)
    sources = (where["metrics"], where["classes"], where["figures"])
    return Record(sources, lambda note: log_evaluation(metrics, table, figures, record=note))


def _parity(root: Path, where: Mapping[str, str]) -> Record:
    """export's: parity.json (figures and verdict) and the model card, as texts too."""
    parity_text, parity = _json(root / where["parity"])
    failures = _failures(parity)
    metric_names.parity_metrics(parity)
    card = root / where["model_card"]
    texts = {Path(where["parity"]).name: parity_text, card.name: card.read_text(encoding="utf-8")}

    def log(note: str) -> None:
        log_parity(parity, failures, record=note)
        _log_texts(texts)

    return Record((where["parity"], where["model_card"]), log)


def _int8(root: Path, where: Mapping[str, str]) -> Record:
    """quantize's: int8.json (figures and verdict), as a text too."""
    text, report = _json(root / where["int8_report"])
    failures = _failures(report)
    metric_names.int8_metrics(report)

    def log(note: str) -> None:
        log_int8(report, failures, record=note)
        _log_texts({Path(where["int8_report"]).name: text})

    return Record((where["int8_report"],), log)


# the stages after train whose record a run can carry, by their name in dvc.yaml
READERS: dict[str, Callable[[Path, Mapping[str, str]], Record]] = {
    EXPORT: _parity,
    EVALUATE: _evaluation,
    QUANTIZE: _int8,
}
