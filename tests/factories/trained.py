"""A project folder in which the train stage ran on tiny digits: what evaluate and export need."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from factories.data import Split, digit_splits, write_prepared
from factories.mlflow_store import sigterm_kept, sqlite_uri, using_store
from factories.params import tiny_params_file
from factories.processes import stage_args
from harness.workspace import GIT_IDENTITY
from kernel.paths import pipeline_vars
from stages.run_record.runs import RunRef, locate_run

DVC_EXP_NAME = "tiny-exp"


@dataclass(frozen=True)
class Workspace:
    """A project folder after ``python -m stages.train`` ran in it (paths absolute)."""

    root: Path
    uri: str
    params: Path
    data_dir: Path
    model: Path
    history: Path
    run_file: Path
    ref: RunRef
    splits: dict[str, Split]

    def store(self, **env: str) -> contextlib.AbstractContextManager[str]:
        return using_store(self.root, self.uri, **env)


def git_repo(folder: Path) -> None:
    """A one-commit git repository, so the run's git_commit tag has something to name."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(GIT_IDENTITY)
    for command in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "tiny"]):
        subprocess.run(
            ["git", "-c", "commit.gpgsign=false", *command], cwd=folder, env=env, check=True
        )


def train_tiny(root: Path, template_db: Path) -> Workspace:
    """Prepared tiny data, then ``train.main`` with dvc.yaml's arguments, into a fresh store."""
    from stages import train

    git_repo(root)
    splits = digit_splits()
    write_prepared(root / "data" / "prepared", splits)
    tiny_params_file(root / "params.yaml")
    shutil.copyfile(template_db, root / "mlflow.db")
    uri = sqlite_uri(root)
    where = pipeline_vars()
    with using_store(root, uri, DVC_EXP_NAME=DVC_EXP_NAME), sigterm_kept():
        train.main(stage_args("train"))
        ref = locate_run(root / where["run_file"], uri)
    absolute = {
        field: root / where[var]
        for field, var in (
            ("data_dir", "prepared"),
            ("model", "model"),
            ("history", "history"),
            ("run_file", "run_file"),
        )
    }
    return Workspace(
        root=root,
        uri=uri,
        params=root / "params.yaml",
        ref=ref,
        splits=splits,
        **absolute,
    )


def export_args(ws: Workspace, out: Path, run_file: Path | None = None) -> list[str]:
    """dvc.yaml's arguments of the export stage, with the workspace's files and ``out``."""
    paths = {
        "model": ws.model,
        "prepared": ws.data_dir,
        "run_file": run_file or ws.run_file,
        "onnx_model": out / "model.onnx",
        "parity": out / "parity.json",
        "model_card": out / "MODEL_CARD.md",
    }
    return ["--params", str(ws.params), *stage_args("export", paths)]


def gated_onnx(ws: Workspace, path: Path) -> Path:
    """The ONNX model export would hand off for ``ws``'s model, written to ``path`` without
    a registry version: what evaluate reads, made by export's own gate."""
    from kernel.params import load_params
    from stages.handoff.gate import gate_onnx_model
    from stages.model.keras_io import load_keras_model
    from stages.run_record.runs import file_sha256

    x_test, y_test = ws.splits["test"]
    provenance = {"model_digest": file_sha256(ws.model), "data_digest": "tiny"}
    gated = gate_onnx_model(
        load_keras_model(ws.model), x_test, y_test, load_params(ws.params).export, provenance
    )
    assert gated.report.passed, gated.report.failures
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gated.model_bytes)
    return path


def quantize_args(
    ws: Workspace,
    exported: Path,
    out: Path,
    params: Path | None = None,
    run_file: Path | None = None,
) -> list[str]:
    """dvc.yaml's arguments of the quantize stage: ``exported``'s fp32 model, files in ``out``."""
    paths = {
        "onnx_model": exported / "model.onnx",
        "prepared": ws.data_dir,
        "run_file": run_file or ws.run_file,
        "int8_model": out / "model.int8.onnx",
        "int8_report": out / "int8.json",
    }
    return ["--params", str(params or ws.params), *stage_args("quantize", paths)]
