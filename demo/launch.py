"""What ``python -m demo`` starts: the pipeline's current models into the site, the request
log of the page's answers, the feedback store of its corrections, then the page's server."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from demo.answers import UNREGISTERED, open_page_answers, registry_identity
from demo.build import BuildError, install_models
from demo.feedback import PageFeedback, TeamCopies, open_store, team_shipper
from demo.pages import PageIds
from demo.serve import SiteError, serve
from kernel.params import Params, load_params
from monitor.request_log import ServedModel
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


def launch(site: Path, port: int, request_log: bool) -> int:
    """Serve the built ``site`` on ``port`` (0: a free one) with the current models, logging
    the page's answers unless ``request_log`` is off; returns when the server stops."""
    if not site.is_dir():
        raise SiteError(f"{site} is not built; run make demo, which builds it")
    models = pipeline_models()
    if "fp32" not in models:
        raise BuildError(f"dvc.yaml has no var {PIPELINE_VARS['fp32']!r} naming the model")
    installed = install_models(site, models)
    if "fp32" not in installed:
        print(
            f"demo: warning: {models['fp32'].relative_to(PROJECT)} is missing, so the "
            "page has no model to run: run `make repro` first",
            file=sys.stderr,
        )
    params = load_params(PROJECT / "params.yaml")
    store = open_store(PROJECT, PROJECT / params.feedback.store)
    pages = PageIds()  # the ids the page gets, good for its answers and its corrections
    identities = page_identities(params, models, installed)
    uri = tracking_uri(PROJECT)
    # what the team's store files the page's copies under, whichever model gave them
    run_model = identities.get("fp32") or ServedModel(
        params.export.registered_model_name, UNREGISTERED
    )
    answers = None
    if request_log:
        folder = PROJECT / params.monitor.log_dir
        answers = open_page_answers(
            params.monitor, folder, identities, pages, run_model=run_model, tracking_uri=uri
        )
    shipper = team_shipper(uri, params.feedback.experiment_name, run_model)
    copies = TeamCopies(shipper) if shipper is not None else None
    feedback = PageFeedback(store, identities, pages, copies=copies)
    serve(site, port, answers, feedback)
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
