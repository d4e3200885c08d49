"""The serving environment's lock against the pipeline's: the served model must compute
what the parity gate measured, so the runtime that runs it is the same version."""

from __future__ import annotations

import re

import pytest

from factories.processes import REPO_ROOT

SHARED = ("onnxruntime", "onnx", "numpy")


def pins(lock: str) -> dict[str, str]:
    text = (REPO_ROOT / lock).read_text()
    return {
        name.lower(): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)
    }


@pytest.mark.parametrize("package", SHARED)
def test_serving_runs_the_pipelines_version_of(package: str) -> None:
    pipeline, serving = pins("requirements.lock"), pins("requirements-serve.lock")
    assert serving[package] == pipeline[package]


def test_the_serving_lock_holds_mlserver_and_its_mlflow_runtime_with_hashes() -> None:
    serving = pins("requirements-serve.lock")
    assert serving["mlserver"] == serving["mlserver-mlflow"]
    assert serving["mlflow"] == pins("requirements.lock")["mlflow"]  # reads the same registry
    # every pin carries at least one hash: uv pip sync refuses a tampered wheel
    text = (REPO_ROOT / "requirements-serve.lock").read_text()
    blocks = re.findall(
        r"^[A-Za-z0-9_.-]+==\S+(?: \\\n(?:\s+--hash=sha256:\w+ ?\\?\n?)+)", text, re.M
    )
    assert len(blocks) == len(serving)
