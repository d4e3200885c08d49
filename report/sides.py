"""The two sides of a review: which commits they are and the pipeline's files each one holds.

A side is the workspace, a git revision or a DVC experiment (its name as ``dvc exp show``
lists it). Its results are the small files the pipeline commits to git (``reports/``,
``cache: false`` in dvc.yaml) and ``dvc.lock``; their paths come from dvc.yaml's ``vars``,
the one place they are written.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from kernel.cli import CommandError
from kernel.paths import pipeline_vars
from stages.dataset.arrays import split_file

if TYPE_CHECKING:
    from dvc.repo import Repo

WORKSPACE = "workspace"
# dvc.yaml's vars that name the files a review reads
REPORT_VARS = ("metrics", "parity", "int8_report", "classes", "history", "confusion")
PARAMS_FILE = "params.yaml"
LOCK_FILE = "dvc.lock"


@dataclass(frozen=True)
class PipelinePaths:
    """Where the pipeline writes what a review reads (dvc.yaml's ``vars``)."""

    metrics: str
    parity: str
    int8_report: str
    classes: str
    history: str
    confusion: str
    run_file: str
    prepared: str
    feedback: str | None = None  # the feedback set (a pipeline before it had none)

    @classmethod
    def read(cls, root: Path) -> PipelinePaths:
        try:
            merged = pipeline_vars(root)
        except FileNotFoundError:
            raise CommandError(
                f"{root}: no dvc.yaml: expected the project's folder (or -C PATH to it)"
            ) from None
        names = (*REPORT_VARS, "run_file", "prepared")
        missing = [name for name in names if name not in merged]
        if missing:
            raise CommandError(
                f"{root / 'dvc.yaml'}: vars lack {', '.join(missing)}: expected the pipeline's "
                "dvc.yaml, which names every output it writes there"
            )
        feedback = merged.get("feedback_data")
        return cls(
            **{name: merged[name] for name in names},
            feedback=feedback or None,
        )

    def reports(self) -> tuple[str, ...]:
        return tuple(getattr(self, name) for name in REPORT_VARS)


@dataclass(frozen=True)
class Side:
    """One side of the comparison and the files it holds (None: the file is not there)."""

    label: str  # as the user named it: "workspace", "main", an experiment's name, a sha
    sha: str | None  # its commit; None for the workspace
    head: str | None  # the commit the workspace is on (for the workspace only)
    exp_name: str | None  # the DVC experiment it is, if it is one
    files: dict[str, bytes | None] = field(default_factory=dict)

    @property
    def dvc_rev(self) -> str:
        """How DVC's ``metrics diff`` and ``params diff`` name this side."""
        return self.sha or WORKSPACE

    @property
    def short(self) -> str:
        return (self.sha or self.head or "")[:7]

    def text(self, path: str) -> str | None:
        data = self.files.get(path)
        return None if data is None else data.decode("utf-8")

    def describe(self) -> str:
        """``main`` (abc1234), workspace (on abc1234), ``wide-1024`` (experiment, def5678)."""
        if self.sha is None:
            return f"workspace (on `{self.short}`)" if self.head else "workspace"
        if self.exp_name:
            return f"`{self.exp_name}` (experiment, `{self.short}`)"
        if " " in self.label:  # a description, such as "merge base with main"
            return f"`{self.short}` ({self.label})"
        if self.label.startswith(self.short) or self.short.startswith(self.label):
            return f"`{self.short}`"
        return f"`{self.label}` (`{self.short}`)"


def git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, stdin=subprocess.DEVNULL, check=False
    )


def resolve(repo: Repo, rev: str, option: str) -> str:
    """The commit ``rev`` names: a git revision, or a DVC experiment's name."""
    from dvc.scm import RevError, resolve_rev

    try:
        return resolve_rev(repo.scm, rev)
    except RevError as err:
        raise CommandError(
            f"{option} {rev}: unknown revision ({err}): expected a git commit, branch or tag, "
            "or an experiment name as `dvc exp show` lists it"
        ) from None


def default_base(root: Path, side_commit: str, main_branch: str | None) -> tuple[str, str]:
    """The merge base of the compared side's commit with the main branch (``main``, or
    ``origin/main`` in a clone without a local ``main``), and that branch's name."""
    candidates = [main_branch] if main_branch else ["main", "origin/main"]
    for branch in candidates:
        found = git(root, "rev-parse", "--verify", "--quiet", f"{branch}^{{commit}}")
        if found.returncode != 0:
            continue
        base = git(root, "merge-base", side_commit, found.stdout.decode().strip())
        if base.returncode != 0:
            raise CommandError(
                f"{side_commit[:7]} has no common ancestor with {branch}: "
                "expected --base REV to compare with"
            )
        return base.stdout.decode().strip(), branch
    named = " or ".join(candidates)
    raise CommandError(
        f"no branch {named} to take the merge base with: expected --base REV, or --main BRANCH"
    )


def experiment_name(repo: Repo, sha: str) -> str | None:
    """The name of the DVC experiment whose commit ``sha`` is, if any."""
    try:
        return repo.experiments.get_exact_name([sha]).get(sha)
    except Exception:  # a name is a nicety: no name rather than no review
        return None


def read_at(root: Path, sha: str | None, paths: tuple[str, ...]) -> dict[str, bytes | None]:
    """The files' bytes at commit ``sha`` (git), or in the workspace when ``sha`` is None."""
    found: dict[str, bytes | None] = {}
    for path in paths:
        if sha is None:
            target = root / path
            found[path] = target.read_bytes() if target.is_file() else None
            continue
        shown = git(root, "show", f"{sha}:{path}")
        found[path] = shown.stdout if shown.returncode == 0 else None
    return found


def open_side(
    repo: Repo, root: Path, label: str, sha: str | None, head: str | None, paths: PipelinePaths
) -> Side:
    files = read_at(root, sha, (*paths.reports(), PARAMS_FILE, LOCK_FILE))
    exp = experiment_name(repo, sha) if sha else None
    return Side(label=label, sha=sha, head=head, exp_name=exp, files=files)


def head_commit(root: Path) -> str:
    found = git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if found.returncode != 0:
        raise CommandError(
            f"{root}: the git repository has no commit yet: expected a base to compare with"
        )
    return found.stdout.decode().strip()


def test_data_digest(side: Side, paths: PipelinePaths) -> str | None:
    """The md5 dvc.lock records for the test split export measured on (None: unknown)."""
    return _export_dep_md5(side, str(split_file(paths.prepared, "test")))


def feedback_digest(side: Side, paths: PipelinePaths) -> str | None:
    """The md5 dvc.lock records for the feedback set export read (None: none, or unknown)."""
    return _export_dep_md5(side, paths.feedback) if paths.feedback else None


def _export_dep_md5(side: Side, wanted: str) -> str | None:
    text = side.text(LOCK_FILE)
    if text is None:
        return None
    try:
        lock = yaml.safe_load(text) or {}
        deps = lock["stages"]["export"]["deps"]
    except (yaml.YAMLError, KeyError, TypeError):
        return None
    for dep in deps:
        if isinstance(dep, dict) and dep.get("path") == wanted:
            return dep.get("md5")
    return None
