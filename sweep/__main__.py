"""``python -m sweep -S key=a,b …``: a grid (or ``--samples N``: a random search) of DVC
experiments run on Ray, each pushed, each an MLflow run under the sweep's parent run.

    python -m sweep -S 'train.dropout=0.2,0.3' -S 'train.hidden_units=[256],[512]'
    python -m sweep --samples 6 -S 'train.learning_rate=tag(log, interval(1e-4, 1e-2))'

Run the same command again to resume: trials whose experiment was pushed are kept.
``RAY_ADDRESS`` names a cluster; unset, a Ray on 127.0.0.1 runs the sweep here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from kernel.atomic import write_json
from kernel.cli import run_command
from kernel.params import Params, load_params
from sweep import engine, tracking, workspace
from sweep.engine import Outcome
from sweep.plan import Plan, Trial, make_plan
from sweep.trial import SweepContext
from tracking.store import tracking_uri

# what trials need from the driver's environment to log where it logs
_FORWARDED = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
              "MLFLOW_TRACKING_INSECURE_TLS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
              "AWS_DEFAULT_REGION", "MLFLOW_S3_ENDPOINT_URL")  # fmt: skip


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sweep", description=__doc__.split("\n\n")[0].replace("``", "")
    )
    add = parser.add_argument
    add("-S", "--set-param", dest="settings", action="append", default=[], metavar="KEY=VALUES",
        help="a param and its values, as dvc exp run --queue -S takes them")  # fmt: skip
    add("--samples", type=int, default=None,
        help="a random search of N trials instead of the whole grid")  # fmt: skip
    add("--seed", type=int, default=0, help="the random search's seed")
    add("--name", default=None,
        help="the sweep's name, its trials' prefix (default: from commit and grid)")  # fmt: skip
    add("--workers", type=int, default=2, help="trials at once (default 2)")
    add("--report", type=Path, default=None,
        help="also write the trials and their figures to this JSON file")  # fmt: skip
    add("--git-remote", default=None,
        help="git remote to clone from and push to (default: origin, else here)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: expected at least 1")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    root = workspace.project_root(Path.cwd())
    commit = workspace.base_commit(root)
    params = load_params(root / "params.yaml")  # the committed params must be valid themselves
    plan, remote = _plan(args, root, commit)
    earlier = _earlier_outcomes(root, remote, plan)
    pending = [trial for trial in plan.trials if trial.name not in earlier]
    _say(
        f"{plan.name}: {len(plan.trials)} trials of commit {commit[:7]}; "
        f"{len(earlier)} finished earlier, {len(pending)} to run, {args.workers} at a time; "
        f"experiments go to {remote.label}"
    )
    uri = tracking_uri(root)
    parent = tracking.open_parent(plan, params.train.experiment_name, uri)
    ran: dict[str, Outcome] = {}
    if pending:
        context = SweepContext(
            sweep=plan.name,
            repo_url=remote.url,
            base_commit=commit,
            dvc_config_local=workspace.local_dvc_config(root),
            parent_run_id=parent,
        )
        ran = _run_trials(root, remote, pending, context, uri, args.workers)
    outcomes = [earlier.get(trial.name) or ran[trial.name] for trial in plan.trials]
    finished = [outcome for outcome in outcomes if outcome.finished]
    best = max(finished, key=lambda outcome: outcome.accuracy, default=None)
    tracking.close_parent(parent, outcomes, best)
    if args.report:
        write_json(args.report, _report(plan, outcomes, best))
    _print_table(outcomes)
    return _conclude(plan, outcomes, best, params)


def _plan(args: argparse.Namespace, root: Path, commit: str) -> tuple[Plan, workspace.GitRemote]:
    """The trials of ``commit``, and the remote they are cloned from and pushed to, checked."""
    params_file = root / "params.yaml"
    plan = make_plan(
        args.settings,
        yaml.safe_load(params_file.read_text(encoding="utf-8")),
        commit,
        samples=args.samples,
        seed=args.seed,
        name=args.name,
    )
    remote = workspace.git_remote(root, args.git_remote)
    workspace.check_commit_on_remote(root, remote, commit)
    workspace.dvc_remote(root)
    return plan, remote


def _run_trials(
    root: Path,
    remote: workspace.GitRemote,
    pending: Sequence[Trial],
    context: SweepContext,
    uri: str,
    workers: int,
) -> dict[str, Outcome]:
    """Run the pending trials on Ray; fetch the experiments of those that finished."""
    workspace.push_base_outputs(root)
    env = {"MLFLOW_TRACKING_URI": uri}
    env.update({name: os.environ[name] for name in _FORWARDED if name in os.environ})
    _say(engine.start(os.environ.get("RAY_ADDRESS") or None, env))
    try:
        outcomes = engine.run(pending, context, workers, root / ".dvc" / "tmp" / "sweeps")
    finally:
        engine.stop()
    workspace.fetch_experiments(root, remote, [o.name for o in outcomes if o.finished])
    return {outcome.name: outcome for outcome in outcomes}


def _conclude(plan: Plan, outcomes: Sequence[Outcome], best: Outcome | None, params: Params) -> int:
    """Say what failed and which trial is best, with its standing in the registry."""
    failed = len([outcome for outcome in outcomes if not outcome.finished])
    if failed:
        _say(
            f"{failed} of {len(outcomes)} trials failed (above); run the same command again "
            "to retry them: the finished ones are kept"
        )
    if best is None:
        _say("no trial finished: no best trial")
        return 1
    run_id = tracking.trial_run_id(params.train.experiment_name, plan.name, best.name)
    export = params.export
    standing = tracking.registry_standing(
        export.registered_model_name, run_id, export.champion_alias
    )
    print(
        f"sweep: best trial {best.name}: test accuracy {best.accuracy:.4f} "
        f"({' '.join(best.overrides)}; registry {standing}); make it the workspace's: "
        f"dvc exp apply {best.name} && dvc pull"
    )
    return 1 if failed else 0


def _earlier_outcomes(root: Path, remote: workspace.GitRemote, plan: Plan) -> dict[str, Outcome]:
    """The trials a previous start of this sweep pushed, checked to be these trials."""
    pushed = workspace.pushed_experiments(remote, root, plan.base_commit)
    done = [trial for trial in plan.trials if trial.name in pushed]
    workspace.fetch_experiments(root, remote, [trial.name for trial in done])
    found = {}
    for trial in done:
        message, metrics = workspace.experiment_record(root, plan.base_commit, trial.name)
        workspace.check_same_trial(trial, plan.name, message)
        figures = {"test_accuracy": float(metrics["accuracy"])}
        found[trial.name] = Outcome(trial.name, trial.overrides, figures, earlier=True)
    return found


def _report(plan: Plan, outcomes: Sequence[Outcome], best: Outcome | None) -> dict:
    return {
        "sweep": plan.name,
        "base_commit": plan.base_commit,
        "best": best.name if best else None,
        "trials": [
            {
                "name": outcome.name,
                "overrides": list(outcome.overrides),
                "state": outcome.state,
                "error": outcome.error,
                "figures": dict(outcome.metrics),
            }
            for outcome in outcomes
        ],
    }


def _print_table(outcomes: Sequence[Outcome]) -> None:
    width = max(len(outcome.name) for outcome in outcomes)
    for outcome in outcomes:
        if outcome.finished:
            line = f"{outcome.state:<8}  {outcome.accuracy:.4f}  {' '.join(outcome.overrides)}"
        else:
            line = f"failed    ------  {' '.join(outcome.overrides)}: {outcome.error}"
            if outcome.log:
                line += f" (log: {outcome.log})"
        print(f"  {outcome.name:<{width}}  {line}")


def _say(line: str) -> None:
    print(f"sweep: {line}", file=sys.stderr, flush=True)


def run(argv: Sequence[str]) -> int:
    # stdout is the sweep's table and best line: MLflow's "View run at" lines go elsewhere
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    return run_command(
        "sweep",
        main,
        argv,
        interrupted="interrupted; run the same command again to go on (pushed trials are kept)",
    )


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
