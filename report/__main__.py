"""``python -m report``: the review page of a change, ``--out``/index.md and its images.

    python -m report                         # the workspace against its merge base with main
    python -m report --rev wide-1024         # an experiment (or any git revision) instead
    python -m report --base HEAD~1 --out /tmp/review

Bad input (an unknown revision, a side without the pipeline's reports, an ``--out`` that
is not a review folder) is one line on stderr and exit status 1, with the last review
left as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from kernel.cli import CommandError, exit_process, run_command
from report import compare, figures
from report.environment import stack_versions
from report.folder import INDEX, check_target, replaced_folder
from report.page import Review, render
from report.runs import look_up
from report.sides import (
    PARAMS_FILE,
    PipelinePaths,
    Side,
    default_base,
    feedback_digest,
    git,
    head_commit,
    open_side,
    resolve,
    test_data_digest,
)

if TYPE_CHECKING:
    from dvc.repo import Repo

DEFAULT_OUT = Path("reports/review")
DEFAULT_F1_THRESHOLD = 0.005  # half a point of F1: about 5 test images of one digit


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number such as 0.005") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value}: expected an F1 difference in 0..1")
    return value


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m report", description=__doc__.splitlines()[0].strip("`")
    )
    parser.add_argument(
        "--rev",
        help="the side to review: a git revision or an experiment name (default: the workspace)",
    )
    parser.add_argument(
        "--base", help="what to compare it with (default: its merge base with --main)"
    )
    parser.add_argument(
        "--main",
        help="the main branch, for the default base (default: main, else origin/main)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"the review's folder, replaced whole (default: {DEFAULT_OUT} in the project)",
    )
    parser.add_argument(
        "--f1-threshold",
        type=_threshold,
        default=DEFAULT_F1_THRESHOLD,
        help=f"list a digit whose F1 moved by this much or more (default: {DEFAULT_F1_THRESHOLD})",
    )
    parser.add_argument(
        "--no-mlflow", action="store_true", help="do not look the runs up in the MLflow store"
    )
    parser.add_argument(
        "-C", dest="root", type=Path, default=Path("."), help="the project's folder (default: .)"
    )
    return parser


def project_root(start: Path) -> Path:
    found = git(start, "rev-parse", "--show-toplevel") if start.is_dir() else None
    if found is None or found.returncode != 0:
        raise CommandError(f"{start}: not in a git repository: expected the project's folder")
    return Path(found.stdout.decode().strip())


def open_repo(root: Path) -> Repo:
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        return Repo(str(root))
    except NotDvcRepoError:
        raise CommandError(f"{root}: not a DVC repository: expected the project's folder") from None


def _require_results(side: Side, paths: PipelinePaths, role: str) -> None:
    if side.files.get(paths.metrics) is not None:
        return
    if side.sha is None:
        raise CommandError(
            f"the workspace has no {paths.metrics}: no pipeline run to review; expected "
            "`make repro` (or `dvc pull`) first, or --rev REV"
        )
    raise CommandError(
        f"{role} {side.describe()} has no {paths.metrics}: expected a commit or "
        "experiment with the pipeline's reports committed (dvc repro, then commit reports/)"
    )


def gather(repo: Repo, root: Path, args: argparse.Namespace) -> Review:
    """Both sides' files, DVC's params and metrics diffs, and what they add up to."""
    paths = PipelinePaths.read(root)
    base, this = _open_sides(repo, root, args, paths)
    params_diff = repo.params.diff(a_rev=base.dvc_rev, b_rev=this.dvc_rev).get("diff", {})
    metrics_diff = repo.metrics.diff(a_rev=base.dvc_rev, b_rev=this.dvc_rev, all=True)
    metrics_diff = metrics_diff.get("diff", {})
    old, new = _reports(base, paths), _reports(this, paths)
    # params are DVC's to compare; dvc.lock differs with any code change, and what it says
    # of the results is in the reports
    compared = paths.reports()
    unchanged = base.sha == this.sha or compare.unchanged(
        params_diff,
        metrics_diff,
        {path: base.files.get(path) for path in compared},
        {path: this.files.get(path) for path in compared},
    )
    histories = (
        compare.read_history(base.text(paths.history)),
        compare.read_history(this.text(paths.history)),
    )
    return Review(
        base=base,
        this=this,
        unchanged=unchanged,
        params=compare.param_rows(params_diff),
        metrics=compare.metric_rows(metrics_diff, paths.metrics, paths.int8_report),
        gates=_gates(old, new),
        rule=_champion_rule(base, this, old, new, paths),
        f1=compare.f1_changes(old["classes"], new["classes"], args.f1_threshold),
        f1_threshold=args.f1_threshold,
        runs=None if args.no_mlflow else look_up(root, [base, this], paths.run_file),
        images=(),
        environment=stack_versions(),
        epochs=tuple(len(h["epoch"]) if h and "epoch" in h else None for h in histories),
        histories=histories,
        confusions=(
            compare.confusion_counts(base.text(paths.confusion)),
            compare.confusion_counts(this.text(paths.confusion)),
        ),
    )


def _open_sides(
    repo: Repo, root: Path, args: argparse.Namespace, paths: PipelinePaths
) -> tuple[Side, Side]:
    """The base and the side under review (``--rev``, else the workspace), each with results."""
    head = head_commit(root)
    this_sha = resolve(repo, args.rev, "--rev") if args.rev else None
    if args.base:
        base_sha, base_label = resolve(repo, args.base, "--base"), args.base
    else:
        base_sha, branch = default_base(root, this_sha or head, args.main)
        base_label = f"merge base with `{branch}`"
    this = open_side(repo, root, args.rev or "workspace", this_sha, head, paths)
    base = open_side(repo, root, base_label, base_sha, None, paths)
    _require_results(this, paths, "--rev")
    _require_results(base, paths, "base")
    return base, this


def _gates(old: dict[str, dict | None], new: dict[str, dict | None]) -> list[compare.Gate]:
    """The parity and int8 gates of both sides, from their reports."""
    return [
        compare.Gate(name, figures, compare.GateSide(old[report]), compare.GateSide(new[report]))
        for name, figures, report in (
            ("Parity", compare.PARITY_FIGURES, "parity"),
            ("int8", compare.INT8_FIGURES, "int8_report"),
        )
    ]


def _champion_rule(
    base: Side,
    this: Side,
    old: dict[str, dict | None],
    new: dict[str, dict | None],
    paths: PipelinePaths,
) -> compare.RuleOutcome:
    """What the champion rule makes of this side against the base."""
    return compare.apply_rule(
        old["parity"],
        new["parity"],
        test_data_digest(base, paths),
        test_data_digest(this, paths),
        _drawn(base, paths),
        _drawn(this, paths),
        _tolerance(this),
    )


def _drawn(side: Side, paths: PipelinePaths) -> tuple[float, str] | None:
    """The side's accuracy on its drawn test set and the digest of the feedback set it came
    from, or None when it had none."""
    metrics = side.text(paths.metrics)
    digest = feedback_digest(side, paths)
    try:
        drawn = json.loads(metrics).get("drawn") if metrics else None
    except (ValueError, AttributeError):
        return None
    if not isinstance(drawn, dict) or digest is None:
        return None
    accuracy = drawn.get("accuracy")
    return (float(accuracy), digest) if isinstance(accuracy, int | float) else None


def _tolerance(side: Side) -> float:
    """``export.promotion_tolerance`` of the side's params.yaml (0 before it existed)."""
    text = side.text(PARAMS_FILE)
    try:
        value = (yaml.safe_load(text) or {}).get("export", {}).get("promotion_tolerance", 0.0)
    except (yaml.YAMLError, AttributeError):
        return 0.0
    return float(value) if isinstance(value, int | float) else 0.0


def _reports(side: Side, paths: PipelinePaths) -> dict[str, dict | None]:
    """The side's parity, int8 and per-class reports, parsed (None: not there)."""
    try:
        return {
            name: compare.load_json(side.text(getattr(paths, name)), getattr(paths, name))
            for name in ("parity", "int8_report", "classes")
        }
    except ValueError as err:
        where = "the workspace" if side.sha is None else f"{side.label} ({side.short})"
        raise CommandError(
            f"{where}: {err}: expected the report as the pipeline writes it"
        ) from None


def write_review(review: Review, out: Path) -> None:
    """The page and its images, swapped into ``out`` together."""
    labels = ("base", "this change")
    with replaced_folder(out) as staging:
        images: list[str] = []
        if not review.unchanged:
            if any(review.histories):
                figures.draw_curves(staging / figures.CURVES, *review.histories, labels)
                images.append(figures.CURVES)
            if any(matrix is not None for matrix in review.confusions):
                figures.draw_confusion(staging / figures.CONFUSION, *review.confusions, labels)
                images.append(figures.CONFUSION)
        page = render(dataclasses.replace(review, images=tuple(images)))
        (staging / INDEX).write_text(page, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    root = project_root(args.root)
    out = (root / DEFAULT_OUT) if args.out is None else args.out.resolve()
    check_target(out)  # before the seconds DVC and MLflow take, not after
    with open_repo(root) as repo:
        review = gather(repo, root, args)
    write_review(review, out)
    verdict = "no change" if review.unchanged else "the changes"
    print(f"report: {out / INDEX}: {verdict}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    exit_process(run_command("report", main))
