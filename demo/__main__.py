"""``python -m demo`` (what ``make demo`` runs): the current models into the site, then serve it.

The model files are the pipeline's, named by dvc.yaml's ``vars`` (``onnx_model`` and, if the
pipeline has it, ``int8_model``); the site must have been built (``python -m demo.build``).
The answers the page reports go to the request log in ``monitor.log_dir``, under the
registry version each model file was registered as (``--no-request-log`` turns it off), and
the corrections people make go to the feedback store, ``feedback.store``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from demo.answers import LOG_BYTES_PER_DAY, UNREGISTERED, PageAnswers, registry_identity
from demo.build import BuildError, install_models
from demo.feedback import FeedbackStore, PageFeedback, team_shipper
from demo.pages import PageIds
from demo.serve import SiteError, port_number, serve
from kernel.cli import run_command
from kernel.params import Params, load_params
from monitor.request_log import RequestLog, ServedModel
from monitor.shipping import ArtifactShipper, is_team_store
from tracking.store import tracking_uri

PROJECT = Path(__file__).resolve().parents[1]
# dvc.yaml's names of the model files, per model the page offers.
PIPELINE_VARS = {"fp32": "onnx_model", "int8": "int8_model"}


def pipeline_models(root: Path = PROJECT) -> dict[str, Path]:
    """The model files the pipeline writes, as dvc.yaml's ``vars`` name them (absolute)."""
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    variables: dict[str, str] = {}
    for entry in pipeline.get("vars", []):
        variables.update(entry)
    return {name: root / variables[var] for name, var in PIPELINE_VARS.items() if var in variables}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    parser.add_argument("--site", type=Path, default=PROJECT / "demo" / "site")
    parser.add_argument("--port", type=port_number, default=8000, help="0 picks a free one")
    parser.add_argument(
        "--no-request-log", action="store_true", help="do not log the page's answers"
    )
    args = parser.parse_args(argv)
    if not args.site.is_dir():
        raise SiteError(f"{args.site} is not built; run make demo, which builds it")
    models = pipeline_models()
    if "fp32" not in models:
        raise BuildError(f"dvc.yaml has no var {PIPELINE_VARS['fp32']!r} naming the model")
    installed = install_models(args.site, models)
    if "fp32" not in installed:
        print(
            f"demo: warning: {models['fp32'].relative_to(PROJECT)} is missing, so the "
            "page has no model to run: run `make repro` first",
            file=sys.stderr,
        )
    params = load_params(PROJECT / "params.yaml")
    pages = PageIds()  # the ids the page gets, good for its answers and its corrections
    answers = None if args.no_request_log else page_answers(models, installed, pages)
    identities = answers.models if answers else page_identities(params, models, installed)
    shipper = team_shipper(
        tracking_uri(PROJECT),
        params.feedback.experiment_name,
        identities.get("fp32") or ServedModel(params.export.registered_model_name, UNREGISTERED),
    )
    store = FeedbackStore(PROJECT / params.feedback.store, shipper)
    feedback = PageFeedback(store, identities, pages)
    serve(args.site, args.port, answers, feedback)
    return 0


def page_identities(
    params: Params, models: dict[str, Path], installed: list[str]
) -> dict[str, ServedModel]:
    """The registry version of each model the site holds (by its training digest)."""
    export = params.export
    preferred = (export.champion_alias, export.alias, params.quantize.alias)
    return {
        name: registry_identity(models[name], export.registered_model_name, name, preferred)
        for name in installed
    }


def page_answers(models: dict[str, Path], installed: list[str], pages: PageIds) -> PageAnswers:
    """The request log of the page's answers, and the registry version of each model."""
    params = load_params(PROJECT / "params.yaml")
    export, monitor = params.export, params.monitor
    identities = page_identities(params, models, installed)
    uri = tracking_uri(PROJECT)
    # the page's answers, whichever model gave them, go to one run of the team's store
    shipper = (
        ArtifactShipper(
            uri,
            monitor.experiment_name,
            "page",
            identities.get("fp32") or ServedModel(export.registered_model_name, UNREGISTERED),
        )
        if is_team_store(uri)
        else None
    )
    log = RequestLog(
        PROJECT / monitor.log_dir,
        source="page",
        keep_pixels=monitor.keep_pixels,
        rotate_bytes=monitor.rotate_mb * 2**20,
        keep_days=monitor.keep_days,
        shipper=shipper,
        max_day_bytes=LOG_BYTES_PER_DAY,
    )
    return PageAnswers(log, identities, pages)


if __name__ == "__main__":
    sys.exit(run_command("demo", main, expected=(OSError,)))
