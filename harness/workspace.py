"""A fresh git + DVC repository holding the project: what a clone gives, in a temporary folder.

The end-to-end tests and ``make bench`` both run the real pipeline in such a copy,
so the developer's own workspace, data and MLflow store are never touched.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import yaml

from harness.processes import run_in_repo
from kernel.paths import PROJECT_ROOT

PROJECT_FILES = ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore")
PROJECT_FOLDERS = ("kernel", "tracking", "stages", "digits_predict", "data", "plots", "feedback")
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "pipeline",
    "GIT_AUTHOR_EMAIL": "pipeline@localhost",
    "GIT_COMMITTER_NAME": "pipeline",
    "GIT_COMMITTER_EMAIL": "pipeline@localhost",
}


def project_copy(
    repo: Path,
    env: Mapping[str, str],
    *,
    folders: Sequence[str] = (),
    params: Mapping[str, dict] | None = None,
    wrap_command: Callable[[str, str], str] | None = None,
) -> Path:
    """Copy the project (and ``folders``) into ``repo``, commit it, and ``dvc init`` it.

    ``params`` replaces keys per section of params.yaml; ``wrap_command(stage, cmd)``
    may rewrite each stage's command (the benchmark wraps them in its probe).
    """
    repo.mkdir(parents=True, exist_ok=True)
    for folder in (*PROJECT_FOLDERS, *folders):
        shutil.copytree(
            PROJECT_ROOT / folder,
            repo / folder,
            # outputs, and corrections a person made on this machine's page: not the project's
            ignore=shutil.ignore_patterns(
                "__pycache__", "raw", "prepared", "node_modules", "feedback.npz", "*.json"
            )
            if folder in ("data", "feedback")
            else shutil.ignore_patterns("__pycache__", "raw", "prepared", "node_modules"),
        )
    for name in PROJECT_FILES:
        shutil.copy2(PROJECT_ROOT / name, repo / name)
    if params:
        raw = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
        for section, values in params.items():
            raw[section].update(values)
        (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    if wrap_command:
        pipeline = yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))
        for stage, spec in pipeline["stages"].items():
            spec["cmd"] = wrap_command(stage, spec["cmd"])
        (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False), encoding="utf-8")
    full_env = {**env, **GIT_IDENTITY}
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
        # the project's DVC setting that `dvc init` does not write: the offline plots page
        ["dvc", "config", "plots.html_template", "../plots/page.html"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "pipeline"],
    ):
        done = run_in_repo(command, repo, full_env)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed in {repo}: {done.stderr.strip()}")
    return repo
