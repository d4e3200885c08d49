"""One drift check (``python -m monitor``): a window of the request log against the training data.

Reads the window (a folder given, else the team's copy of every server's log when the
tracking store is a team server, else ``monitor.log_dir``), has ``monitor.drift`` judge it,
writes ``report.html`` and ``summary.json`` together (both or neither), and logs one MLflow
run with the scores as metrics and both files as artifacts.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel.atomic import StagedFiles
from kernel.cli import CommandError
from kernel.params import MonitorParams
from kernel.signals import deferred_signals
from monitor.descriptors import DESCRIPTORS
from monitor.window import parse_duration, read_window

if TYPE_CHECKING:
    import pandas as pd

REPORT, SUMMARY = "report.html", "summary.json"
EXIT_DRIFT = 1


def check_drift(
    params: MonitorParams,
    *,
    last: int | None,
    since: str | None,
    log_dir: Path | None,
    out: Path,
    train: Path,
) -> int:
    """Judge the window (``since`` a duration such as ``24h``, else the ``last`` answers, else
    ``monitor.window``'s); write and log the report; 0 without drift, ``EXIT_DRIFT`` with."""
    window, described = _window(params, last, since, log_dir)

    from monitor.drift import drift_report, reference_frame  # Evidently: seconds to import

    reference = reference_frame(train, params.reference_images, params.seed)
    snapshot, verdict = drift_report(window, reference, params)
    summary = {**verdict.summary, "window": {**verdict.summary["window"], "chosen": described}}
    write_outputs(out, snapshot, summary)
    run_id = log_run(params, summary, out)
    models = ", ".join(summary["window"]["models"])
    print(
        f"monitor: {len(window)} answers ({described}, {models}): {verdict.line()}; report "
        f"{out / REPORT}, MLflow run {run_id}",
        flush=True,
    )
    if verdict.drift:
        print(f"monitor: drift: {verdict.line()}", file=sys.stderr, flush=True)
        return EXIT_DRIFT
    return 0


def _window(
    params: MonitorParams, last: int | None, since: str | None, log_dir: Path | None
) -> tuple[pd.DataFrame, str]:
    """The answers to judge and how to name them; ``CommandError`` when too few to judge."""
    duration: dt.timedelta | None = parse_duration(since) if since else None
    count = None if duration else (last or params.window)
    with tempfile.TemporaryDirectory(prefix="monitor-") as scratch:
        folder, where = _log_folder(log_dir, params, Path(scratch))
        window = read_window(folder, last=count, since=duration)
    described = f"the last {since}" if duration else f"the last {count} answers"
    if len(window) < params.min_requests:
        raise CommandError(
            f"{len(window)} answers in the window ({described} in {where}); at least "
            f"{params.min_requests} are needed to judge drift (monitor.min_requests)"
        )
    return window, described


def _log_folder(given: Path | None, params: MonitorParams, scratch: Path) -> tuple[Path, str]:
    """The folder to read and how to name it: ``--log-dir``, else the team's copy of every
    server's log when the store is a team server, else ``monitor.log_dir``."""
    if given is not None:
        return given, str(given)
    from monitor.log_settings import download_logs
    from tracking.store import connect, tracking_uri
    from tracking.team_copies import is_team_store

    uri = tracking_uri()
    if not is_team_store(uri):
        return Path(params.log_dir), params.log_dir
    connect(uri)
    download_logs(uri, params.experiment_name, scratch, params.keep_days)
    return scratch, f"the request logs copied to {uri}"


def write_outputs(out: Path, snapshot: Any, summary: dict[str, Any]) -> None:
    """Both files replace the previous ones together, or neither does."""
    with StagedFiles() as staged:
        snapshot.save_html(str(staged.path_for(out / REPORT)))
        staged.write_json(out / SUMMARY, summary)
        with deferred_signals():  # no signal between the two renames
            staged.commit()


def log_run(params: MonitorParams, summary: dict[str, Any], out: Path) -> str:
    """One run per report: the scores as metrics, the two files as artifacts."""
    import mlflow

    from tracking.store import connect, get_or_create_experiment, retry_locked

    uri = connect()
    experiment_id = get_or_create_experiment(params.experiment_name, uri)
    client = mlflow.MlflowClient(uri)
    tags = _run_tags(summary)
    run = retry_locked(lambda: client.create_run(experiment_id, tags=tags), "starting a run")
    run_id = run.info.run_id
    try:
        for key, value in _run_metrics(summary).items():
            client.log_metric(run_id, key, float(value))
        client.log_param(run_id, "monitor.drift_method", params.drift_method)
        client.log_param(run_id, "monitor.drift_threshold", params.drift_threshold)
        client.log_param(run_id, "monitor.max_drifted_share", params.max_drifted_share)
        client.log_param(run_id, "monitor.max_prediction_distance", params.max_prediction_distance)
        for name in (REPORT, SUMMARY):
            client.log_artifact(run_id, str(out / name))
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return run_id


def _run_tags(summary: dict[str, Any]) -> dict[str, str]:
    from tracking.store import member_name

    window = summary["window"]
    versions = sorted({name.split(" (@")[0] for name in window["models"]})
    return {
        "mlflow.user": member_name(),
        "mlflow.runName": f"drift {window['last'][:16]}",
        "monitor.window": window["chosen"],
        "monitor.window_first": window["first"],
        "monitor.window_last": window["last"],
        "monitor.drift": str(summary["drift"]).lower(),
        "model.version": ", ".join(versions),
    }


def _run_metrics(summary: dict[str, Any]) -> dict[str, float]:
    descriptors = summary["descriptors"]
    return {
        "window/answers": summary["window"]["answers"],
        "drift/share": summary["drifted_share"],
        "drift/flagged": float(summary["drift"]),
        "prediction/distance": summary["prediction_distance"],
        **{f"confidence/{k}": v for k, v in summary["confidence"].items()},
        **{f"drift/{name}": descriptors[name]["score"] for name in DESCRIPTORS},
        **{f"window/{name}": descriptors[name]["window_mean"] for name in DESCRIPTORS},
    }
