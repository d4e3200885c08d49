"""The pull-request workflow that posts the review (.github/workflows/model-report.yml):
valid under the GitHub Actions workflow schema (check-jsonschema's vendored copy, offline),
and it does what docs/review.md says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from kernel.paths import PROJECT_ROOT
from report.__main__ import DEFAULT_OUT

WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "model-report.yml"


def _schema_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         str(path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip


def test_the_workflow_is_valid_under_the_github_actions_schema() -> None:
    done = _schema_check(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_refuses_a_workflow_with_a_mistyped_key(tmp_path) -> None:
    mistyped = tmp_path / "mistyped.yml"
    mistyped.write_text(WORKFLOW.read_text(encoding="utf-8").replace("runs-on:", "runs_on:"))
    done = _schema_check(mistyped)
    assert done.returncode == 1 and "runs_on" in done.stdout, done.stdout + done.stderr


def _steps() -> list[dict]:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True
    assert "pull_request" in (workflow.get("on") or workflow.get(True))
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}
    (job,) = workflow["jobs"].values()
    return job["steps"]


def test_it_sets_up_gets_the_outputs_reviews_and_comments() -> None:
    steps = _steps()
    runs = [step.get("run", "") for step in steps]
    order = [
        next(i for i, run in enumerate(runs) if needle in run)
        for needle in ("make setup", "dvc pull", "make repro", "python -m report", "gh pr comment")
    ]
    assert order == sorted(order), "set up, pull, repro, review, comment: in that order"
    assert any("--body-file" in run for run in runs)
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert len(uploads) == 1
    report_run = next(run for run in runs if "python -m report" in run)
    out = report_run.split("--out", 1)[1].split()[0]
    assert out.rstrip("/") == str(DEFAULT_OUT)
    assert uploads[0]["with"]["path"].rstrip("/") == out.rstrip("/")


def test_secrets_reach_only_the_steps_that_need_them() -> None:
    for step in _steps():
        text = yaml.safe_dump(step)
        if "secrets." not in text:
            continue
        assert "run" in step and "env" in step, step.get("name")
        assert "secrets." not in step["run"], "a secret goes through env, never inline"
