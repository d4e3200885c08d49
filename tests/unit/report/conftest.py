"""A small git + DVC repository of hand-made pipeline reports, for ``python -m report``.

The project's own dvc.yaml and params.yaml, and per commit the files the pipeline commits
(reports/, dvc.lock) written by hand: no stage runs. Its history:

    c0 (tag no-results)  dvc.yaml and params.yaml only
    c1 (main)            the baseline: accuracy 0.95, F1 0.95 for every digit
    ├── c2 (change)      hidden_units [128], dropout 0: accuracy 0.93, digit 3's F1 0.90
    └── c3 (better)      epochs 20: accuracy 0.97, its int8 model fails its gate

The workspace is at ``change``; a test that alters it works on its own copy.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from harness.workspace import GIT_IDENTITY
from kernel.paths import PROJECT_ROOT

TEST_DATA_MD5 = "0123456789abcdef0123456789abcdef"


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def history_csv(epochs: int, final_loss: float) -> str:
    lines = ["epoch,loss,accuracy,val_loss,val_accuracy"]
    for epoch in range(1, epochs + 1):
        loss = final_loss * (1 + (epochs - epoch) / epochs)
        lines.append(f"{epoch},{loss:.6f},{1 - loss:.6f},{loss * 1.2:.6f},{1 - loss * 1.2:.6f}")
    return "\n".join(lines) + "\n"


def confusion_csv(mistakes: dict[tuple[int, int], int], per_digit: int = 20) -> str:
    """``per_digit`` test images of each digit, all right but ``mistakes[(actual, predicted)]``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["actual", "predicted"])
    for digit in range(10):
        wrong = [(p, n) for (a, p), n in mistakes.items() if a == digit]
        right = per_digit - sum(n for _, n in wrong)
        writer.writerows([[digit, digit]] * right)
        for predicted, count in wrong:
            writer.writerows([[digit, predicted]] * count)
    return out.getvalue()


def reports(
    accuracy: float,
    loss: float,
    f1: dict[int, float] | None = None,
    *,
    epochs: int = 3,
    int8_passed: bool = True,
    mistakes: dict[tuple[int, int], int] | None = None,
) -> dict[str, str]:
    """The files of reports/ as the pipeline writes them, with these figures."""
    scores = {d: (f1 or {}).get(d, accuracy) for d in range(10)}
    classes = {
        "confusion_matrix": [[0] * 10 for _ in range(10)],
        "per_class": {
            str(d): {"f1": s, "precision": s, "recall": s, "support": 20} for d, s in scores.items()
        },
    }
    metrics = {
        "accuracy": accuracy,
        "loss": loss,
        "macro_f1": sum(scores.values()) / 10,
        "macro_precision": accuracy,
        "macro_recall": accuracy,
    }
    parity = {
        "argmax_agreement": 1.0,
        "failures": [],
        "keras_accuracy": accuracy,
        "max_abs_diff": 4.2e-07,
        "mean_abs_diff": 1e-09,
        "min_agreement": 1.0,
        "onnx_accuracy": accuracy,
        "onnxruntime_version": "1.31.1",
        "opset": 17,
        "passed": True,
        "provider": "CPUExecutionProvider",
        "samples": 200,
        "tolerance": 1e-05,
    }
    drop = 0.001 if int8_passed else 0.02
    int8 = {
        "accuracy_drop": drop,
        "argmax_agreement": 0.995 if int8_passed else 0.97,
        "calibration_images": 0,
        "failures": [] if int8_passed else ["accuracy drop 0.0200 > 0.0100"],
        "fp32_accuracy": accuracy,
        "int8_accuracy": accuracy - drop,
        "max_abs_diff": 0.05,
        "max_accuracy_drop": 0.01,
        "max_probability_diff": 0.1,
        "method": "dynamic",
        "min_agreement": 0.98,
        "passed": int8_passed,
        "samples": 200,
        "size_ratio": 3.9,
    }
    dump = lambda obj: json.dumps(obj, indent=2, sort_keys=True) + "\n"  # noqa: E731
    return {
        "reports/metrics.json": dump(metrics),
        "reports/parity.json": dump(parity),
        "reports/int8.json": dump(int8),
        "reports/classes.json": dump(classes),
        "reports/history.csv": history_csv(epochs, loss),
        "reports/confusion.csv": confusion_csv(mistakes or {}),
    }


def dvc_lock(test_md5: str = TEST_DATA_MD5) -> str:
    lock = {
        "schema": "2.0",
        "stages": {
            "export": {
                "cmd": "python -m stages.export",
                "deps": [{"path": "data/prepared/test.npz", "md5": test_md5, "size": 1}],
            }
        },
    }
    return yaml.safe_dump(lock, sort_keys=False)


def write_side(repo: Path, files: dict[str, str], **train: object) -> None:
    """Write these report files, dvc.lock and params.yaml with ``train`` overrides."""
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text, encoding="utf-8")
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["train"].update(train)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    (repo / "dvc.lock").write_text(dvc_lock(), encoding="utf-8")


def commit(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", message)
    return _git(repo, "rev-parse", "HEAD")


BASELINE = reports(0.95, 0.20, mistakes={(3, 5): 1})
CHANGE = reports(0.93, 0.25, {3: 0.90, 7: 0.952}, epochs=4, mistakes={(3, 5): 2, (7, 1): 1})
BETTER = reports(0.97, 0.15, int8_passed=False, epochs=5)


@pytest.fixture(scope="session")
def review_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository above, built once; tests that change it use ``repo_copy``."""
    from dvc.repo import Repo

    repo = tmp_path_factory.mktemp("review") / "repo"
    repo.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in GIT_IDENTITY.items():
            patch.setenv(key, value)
        _git(repo, "init", "-q", "-b", "main")
        Repo.init(str(repo)).close()
        shutil.copy2(PROJECT_ROOT / "dvc.yaml", repo / "dvc.yaml")
        shutil.copy2(PROJECT_ROOT / "params.yaml", repo / "params.yaml")
        commit(repo, "the pipeline, no results yet")
        _git(repo, "tag", "no-results")
        write_side(repo, BASELINE)
        commit(repo, "baseline")
        _git(repo, "checkout", "-q", "-b", "better")
        write_side(repo, BETTER, epochs=20)
        commit(repo, "twenty epochs")
        _git(repo, "checkout", "-q", "main")
        _git(repo, "checkout", "-q", "-b", "change")
        write_side(repo, CHANGE, hidden_units=[128], dropout=0.0)
        commit(repo, "a narrower network")
    return repo


@pytest.fixture
def repo_copy(review_repo: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(review_repo, copy, symlinks=True)
    return copy


@pytest.fixture
def no_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MLFLOW_TRACKING_URI: the report looks for mlflow.db in the repo and finds none."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def git_in() -> Callable[..., str]:
    return _git
