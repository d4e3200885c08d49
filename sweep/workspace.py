"""The driver's clone: the commit trials start from, where their experiments go, and what
is already there (a resumed sweep skips the trials whose experiment was pushed)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sweep.plan import SweepError, Trial

# what a `dvc repro` rewrites in git: a sweep starts from the commit, without them
_OUTPUTS_IN_GIT = ("dvc.lock", "reports/")


@dataclass(frozen=True)
class GitRemote:
    """Where trials clone the base commit from and push their experiments to."""

    label: str  # a git remote's name, or "the workspace"
    url: str
    is_workspace: bool


def command_line(args: list[str]) -> list[str]:
    """``dvc …`` as this environment's dvc (PATH or not); other commands as they are."""
    return [sys.executable, "-m", "dvc", *args[1:]] if args[0] == "dvc" else args


def run(args: list[str], cwd: Path, what: str, timeout: float = 600) -> str:
    """Run git or dvc in ``cwd``; on failure, one line naming ``what`` and its last error."""
    done = subprocess.run(
        command_line(args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise SweepError(f"{what} failed: {lines[-1].strip() if lines else 'no output'}")
    return done.stdout


def project_root(start: Path) -> Path:
    """The git work tree around ``start`` holding dvc.yaml and params.yaml."""
    try:
        top = run(["git", "rev-parse", "--show-toplevel"], start, "git rev-parse").strip()
    except SweepError:
        raise SweepError(f"{start} is not in a git repository; run the sweep in a clone") from None
    root = Path(top)
    if not (root / "dvc.yaml").is_file() or not (root / "params.yaml").is_file():
        raise SweepError(f"{root}: no dvc.yaml and params.yaml; run the sweep in the project")
    return root


def base_commit(root: Path) -> str:
    """HEAD, once the work tree holds nothing the trials would miss."""
    try:
        commit = run(["git", "rev-parse", "--verify", "HEAD"], root, "git rev-parse").strip()
    except SweepError:
        raise SweepError("the repository has no commit yet; commit the project first") from None
    changed = run(["git", "status", "--porcelain", "--untracked-files=no"], root, "git status")
    missed = sorted(
        path
        for path in (line[3:].split(" -> ")[-1] for line in changed.splitlines())
        if not path.startswith(_OUTPUTS_IN_GIT)
    )
    if missed:
        shown = ", ".join(missed[:4]) + (", …" if len(missed) > 4 else "")
        raise SweepError(
            f"uncommitted changes to {shown}: trials run commit {commit[:7]} without them; "
            "expected them committed (git commit) or stashed"
        )
    return commit


def git_remote(root: Path, name: str | None) -> GitRemote:
    """The named git remote; by default ``origin`` if the clone has one, else the workspace."""
    names = run(["git", "remote"], root, "git remote").split()
    if name is None and "origin" in names:
        name = "origin"
    if name is None:
        return GitRemote("the workspace", str(root), is_workspace=True)
    if name not in names:
        raise SweepError(
            f"--git-remote {name}: this clone has no such remote; expected one of "
            f"{names or 'its remotes (it has none)'}"
        )
    url = run(["git", "remote", "get-url", name], root, "git remote get-url").strip()
    if Path(url).is_dir():
        url = str(Path(url).resolve())
    return GitRemote(name, url, is_workspace=False)


def check_commit_on_remote(root: Path, remote: GitRemote, commit: str) -> None:
    if remote.is_workspace:
        return
    run(["git", "fetch", "-q", remote.label], root, f"git fetch {remote.label}")
    holding = run(
        ["git", "branch", "-r", "--contains", commit, "--list", f"{remote.label}/*"],
        root,
        "git branch",
    )
    if not holding.strip():
        raise SweepError(
            f"commit {commit[:7]} is not on {remote.label}, where trials clone it from; "
            f"expected it pushed (git push {remote.label})"
        )


def dvc_remote(root: Path) -> str:
    """The default DVC remote trials push their outputs to."""
    try:
        found = run(["dvc", "remote", "default"], root, "dvc remote default").strip()
    except SweepError:
        found = ""
    if not found:
        raise SweepError(
            "no default DVC remote: each trial pushes its outputs there; start the team "
            "stack (make team-up) or add one (dvc remote add -d NAME URL)"
        )
    return found


def local_dvc_config(root: Path) -> str:
    """``.dvc/config.local`` (the remote's keys, not in git), for the trials' clones."""
    path = root / ".dvc" / "config.local"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def push_base_outputs(root: Path) -> None:
    """The base commit's outputs to the DVC remote, so trials pull the data, not remake it."""
    run(["dvc", "push", "-q"], root, "dvc push (the base commit's outputs)", timeout=1800)


def pushed_experiments(remote: GitRemote, root: Path, commit: str) -> dict[str, str]:
    """Name → commit of the experiments on ``remote`` whose baseline is ``commit``."""
    prefix = f"refs/exps/{commit[:2]}/{commit[2:]}/"
    listed = run(["git", "ls-remote", remote.url, f"{prefix}*"], root, "git ls-remote")
    found = {}
    for line in listed.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith(prefix):
            found[ref.removeprefix(prefix)] = sha
    return found


def fetch_experiments(root: Path, remote: GitRemote, names: list[str]) -> None:
    """The experiments' refs and outputs into this clone, so ``dvc exp show`` lists them."""
    if remote.is_workspace or not names:
        return  # trials pushed into this very repository
    run(["dvc", "exp", "pull", "-f", remote.label, *names], root, "dvc exp pull", timeout=1800)


def experiment_record(root: Path, commit: str, name: str) -> tuple[str, dict[str, float]]:
    """An experiment's commit message and test metrics, read from its ref in this clone."""
    ref = f"refs/exps/{commit[:2]}/{commit[2:]}/{name}"
    message = run(["git", "log", "-1", "--format=%B", ref], root, f"git log {name}").strip()
    shown = run(["git", "show", f"{ref}:reports/metrics.json"], root, f"git show {name}")
    return message, json.loads(shown)


def check_same_trial(trial: Trial, sweep: str, message: str) -> None:
    """A pushed experiment of that name must be this trial, not one of another grid."""
    if message.splitlines()[0] != trial.message(sweep):
        raise SweepError(
            f"experiment {trial.name} exists with other settings ({message.splitlines()[0]!r}); "
            f"this sweep gives {trial.describe()!r}: name this sweep anew (--name)"
        )
