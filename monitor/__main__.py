"""``python -m monitor`` (``make monitor``): has what the deployed model is asked drifted?

    python -m monitor [--last N | --since 24h] [--log-dir DIR] [--out reports/monitoring]

Reads a window of the request log (the last ``monitor.window`` answers by default; with a
team server for the tracking store, the log every member's server copied there), compares
it with the training data's descriptors and labels (``monitor.drift``), writes
``report.html`` (Evidently's) and ``summary.json`` into ``--out``, and logs an MLflow run in
the ``monitor.experiment_name`` experiment with the scores as metrics and both files as
artifacts. Exit status 0: no drift; 1: drift past ``params.yaml``'s thresholds (one line
naming what moved), or a window too small to judge, or any other failure (one line each).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kernel.atomic import json_text
from kernel.cli import CommandError, run_command
from kernel.params import DEFAULT_PARAMS_FILE, MonitorParams, load_params
from monitor.descriptors import DESCRIPTORS
from monitor.window import parse_duration, read_window

TRAIN_FILE = Path("data/prepared/train.npz")
OUT_DIR = Path("reports/monitoring")
REPORT, SUMMARY = "report.html", "summary.json"
EXIT_DRIFT = 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = load_params(args.params).monitor
    since = parse_duration(args.since) if args.since else None
    last = None if since else (args.last or params.window)
    with tempfile.TemporaryDirectory(prefix="monitor-") as scratch:
        log_dir, where = _log_folder(args.log_dir, params, Path(scratch))
        window = read_window(log_dir, last=last, since=since)
    described = f"the last {args.since}" if since else f"the last {last} answers"
    if len(window) < params.min_requests:
        raise CommandError(
            f"{len(window)} answers in the window ({described} in {where}); at least "
            f"{params.min_requests} are needed to judge drift (monitor.min_requests)"
        )

    from monitor.drift import drift_report, reference_frame

    reference = reference_frame(args.train, params.reference_images, params.seed)
    snapshot, verdict = drift_report(window, reference, params)
    summary = {**verdict.summary, "window": {**verdict.summary["window"], "chosen": described}}
    _write_outputs(args.out, snapshot, summary)
    run_id = _log_run(params, summary, args.out)
    models = ", ".join(summary["window"]["models"])
    print(
        f"monitor: {len(window)} answers ({described}, {models}): {verdict.line()}; report "
        f"{args.out / REPORT}, MLflow run {run_id}",
        flush=True,
    )
    if verdict.drift:
        print(f"monitor: drift: {verdict.line()}", file=sys.stderr, flush=True)
        return EXIT_DRIFT
    return 0


def _log_folder(given: Path | None, params: MonitorParams, scratch: Path) -> tuple[Path, str]:
    """The folder to read and how to name it: ``--log-dir``, else the team's copy of every
    server's log when the store is a team server (``monitor.shipping``), else
    ``monitor.log_dir``."""
    if given is not None:
        return given, str(given)
    from monitor.shipping import download_logs, is_team_store
    from tracking.store import connect, tracking_uri

    uri = tracking_uri()
    if not is_team_store(uri):
        return Path(params.log_dir), params.log_dir
    connect(uri)
    download_logs(uri, params.experiment_name, scratch, params.keep_days)
    return scratch, f"the request logs copied to {uri}"


def _write_outputs(out: Path, snapshot: Any, summary: dict[str, Any]) -> None:
    """Both files replace the previous ones together, or neither does."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".partial-") as scratch:
        staged = Path(scratch)
        snapshot.save_html(str(staged / REPORT))
        (staged / SUMMARY).write_text(json_text(summary), encoding="utf-8")
        for name in (REPORT, SUMMARY):
            (staged / name).chmod(0o644)
            (staged / name).replace(out / name)


def _log_run(params: MonitorParams, summary: dict[str, Any], out: Path) -> str:
    """One run per report: the scores as metrics, the two files as artifacts."""
    import mlflow

    from tracking.store import connect, get_or_create_experiment, member_name, retry_locked

    uri = connect()
    experiment_id = get_or_create_experiment(params.experiment_name, uri)
    client = mlflow.MlflowClient(uri)
    window = summary["window"]
    versions = sorted({name.split(" (@")[0] for name in window["models"]})
    tags = {
        "mlflow.user": member_name(),
        "mlflow.runName": f"drift {window['last'][:16]}",
        "monitor.window": window["chosen"],
        "monitor.window_first": window["first"],
        "monitor.window_last": window["last"],
        "monitor.drift": str(summary["drift"]).lower(),
        "model.version": ", ".join(versions),
    }
    run = retry_locked(lambda: client.create_run(experiment_id, tags=tags), "starting a run")
    run_id = run.info.run_id
    metrics = {
        "window/answers": window["answers"],
        "drift/share": summary["drifted_share"],
        "drift/flagged": float(summary["drift"]),
        "prediction/distance": summary["prediction_distance"],
        **{f"confidence/{k}": v for k, v in summary["confidence"].items()},
        **{f"drift/{name}": summary["descriptors"][name]["score"] for name in DESCRIPTORS},
        **{f"window/{name}": summary["descriptors"][name]["window_mean"] for name in DESCRIPTORS},
    }
    try:
        for key, value in metrics.items():
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


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of answers >= 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m monitor", description=__doc__.splitlines()[0])
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--last", type=_positive, help="the last N answers (monitor.window)")
    window.add_argument("--since", help="the answers of the last 30m, 24h, 7d, ...")
    parser.add_argument("--log-dir", type=Path, help="the request log (monitor.log_dir)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"default {OUT_DIR}")
    parser.add_argument("--params", default=DEFAULT_PARAMS_FILE, help="the params file")
    parser.add_argument("--train", type=Path, default=TRAIN_FILE, help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(run_command("monitor", main, any_error=True))
