"""The sweep's parent run in MLflow: each trial's run (made by the train stage, as for any
experiment) is its child, so the UI lists the sweep as one row that opens to its trials.

A resumed sweep reopens the same parent run (found by its ``sweep`` tag).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tracking.store import connect, get_or_create_experiment, member_name, retry_locked

if TYPE_CHECKING:
    from sweep.engine import Outcome
    from sweep.plan import Plan

PARENT_ROLE = "parent"


def open_parent(plan: Plan, experiment_name: str, uri: str | None = None) -> str:
    """The id of the sweep's parent run, made on the first start, RUNNING again on a resume."""
    import mlflow

    uri = connect(uri)
    client = mlflow.MlflowClient(uri)
    experiment_id = get_or_create_experiment(experiment_name, uri)
    query = f"tags.sweep = '{plan.name}' and tags.sweep_role = '{PARENT_ROLE}'"
    found = retry_locked(
        lambda: client.search_runs([experiment_id], filter_string=query, max_results=1),
        "finding the sweep's run",
    )
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(
        experiment_id,
        run_name=plan.name,
        tags={
            "sweep": plan.name,
            "sweep_role": PARENT_ROLE,
            "mlflow.user": member_name(),
            "git_commit": plan.base_commit,
            "mlflow.note.content": (
                f"Sweep {plan.name}: {len(plan.trials)} trials of commit {plan.base_commit[:7]}, "
                f"each a DVC experiment {plan.name}-N; settings {' '.join(plan.settings)}"
            ),
        },
    )
    params = {
        "sweep.settings": " ".join(plan.settings),
        "sweep.trials": len(plan.trials),
        "sweep.search": "grid" if plan.samples is None else f"random, seed {plan.seed}",
        "sweep.swept": " ".join(plan.swept_keys),
    }
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    return run.info.run_id


def close_parent(run_id: str, outcomes: Sequence[Outcome], best: Outcome | None) -> None:
    """The sweep's figures on its run; FINISHED when every trial finished, else FAILED."""
    import mlflow

    client = mlflow.MlflowClient()
    finished = [outcome for outcome in outcomes if outcome.finished]
    client.log_metric(run_id, "trials/finished", len(finished))
    client.log_metric(run_id, "trials/failed", len(outcomes) - len(finished))
    if best is not None:
        client.log_metric(run_id, "best/test_accuracy", best.accuracy)
        client.set_tag(run_id, "best_trial", best.name)
    status = "FINISHED" if len(finished) == len(outcomes) else "FAILED"
    client.set_terminated(run_id, status=status)


def trial_run_id(experiment_name: str, sweep: str, name: str) -> str | None:
    """The finished run of trial ``name`` (for a trial an earlier start of the sweep ran)."""
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    query = (
        f"tags.sweep = '{sweep}' and tags.dvc_exp_name = '{name}' "
        "and attributes.status = 'FINISHED'"
    )
    found = retry_locked(
        lambda: client.search_runs(
            [experiment.experiment_id], filter_string=query, order_by=["start_time DESC"],
            max_results=1,
        ),
        "finding the trial's run",
    )  # fmt: skip
    return found[0].info.run_id if found else None


def registry_standing(registered_name: str, run_id: str | None, champion_alias: str) -> str:
    """``v7, @champion`` or ``v7``: the version the trial's export registered."""
    from tracking.registry import alias_target, versions_from_run

    versions = versions_from_run(registered_name, run_id, "fp32") if run_id else []
    if not versions:
        return "not registered"
    version = versions[-1]
    champion = alias_target(registered_name, champion_alias)
    if champion == version:
        return f"v{version}, now @{champion_alias}"
    return f"v{version}; @{champion_alias} stays v{champion}, by the promotion rule"
