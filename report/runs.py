"""Each side's MLflow run and registry record, when the store is there to ask.

A side's run is the one train tagged with its model's digest (``models/run.json``, in DVC's
cache: read from the workspace, or from the cache at the side's commit). Its registered
fp32 version carries the ``promotion.*`` tags export wrote when the champion rule decided
(``tracking.version_tags``).
Nothing here is needed for a review: a store that is missing or unreachable gives a note
on the page, not a failure. A missing SQLite store is never created.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kernel.cli import CommandError
from report.sides import PARAMS_FILE, Side
from tracking.champion_history import Move, Pin, history, pin_of
from tracking.run_tags import MODEL_DIGEST_TAG
from tracking.store import tracking_uri
from tracking.version_tags import FP32, VersionTags


@dataclass(frozen=True)
class Version:
    version: str
    aliases: tuple[str, ...]
    tags: VersionTags


LAST_MOVES = 3


@dataclass(frozen=True)
class Run:
    name: str
    run_id: str
    link: str | None  # the run's page, when the store is a server
    registered_name: str
    champion_alias: str
    champion_now: str | None  # the version @champion points at today
    versions: tuple[Version, ...] = ()
    # the last moves of @champion (tracking.champion_history), and its pin if a person set one
    champion_moves: tuple[Move, ...] = ()
    champion_pin: Pin | None = None


@dataclass(frozen=True)
class Lookup:
    """What the store said of each side: a run, or why there is none (by side label)."""

    uri: str
    unavailable: str | None = None  # why the store was not asked at all
    runs: dict[str, Run | str] = field(default_factory=dict)


def store_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", "").strip() or tracking_uri(root)


def look_up(root: Path, sides: list[Side], run_file: str) -> Lookup:
    uri = store_uri(root)
    if uri.startswith("sqlite:///"):
        store = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        if not store.is_file():
            return Lookup(uri, unavailable=f"no MLflow store at {store}")
    elif not uri.startswith(("http://", "https://")):
        return Lookup(uri, unavailable=f"MLflow store {uri} is not one the report reads")
    from tracking.store import connect

    try:
        connect(uri)
    except CommandError as err:
        return Lookup(uri, unavailable=str(err))
    runs: dict[str, Run | str] = {}
    for side in sides:
        try:
            runs[side.label] = _run_of(root, side, run_file, uri)
        except Exception as err:  # the store's trouble is a note, not a failure
            runs[side.label] = f"MLflow: {type(err).__name__}: {str(err).splitlines()[0]}"
    return Lookup(uri, runs=runs)


def _run_file(root: Path, side: Side, run_file: str) -> dict | None:
    if side.sha is None:
        path = root / run_file
        text = path.read_text(encoding="utf-8") if path.is_file() else None
    else:
        import dvc.api

        try:
            text = dvc.api.read(run_file, repo=str(root), rev=side.sha)
        except Exception:  # not in the cache: DVC's many errors mean one thing
            text = None
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _export_params(side: Side) -> tuple[str, str] | None:
    """The side's registered model name and champion alias (its params.yaml's)."""
    try:
        params = yaml.safe_load(side.text(PARAMS_FILE) or "") or {}
        export = params["export"]
        return str(export["registered_model_name"]), str(export["champion_alias"])
    except (yaml.YAMLError, KeyError, TypeError):
        return None


def _champion_now(client, name: str, alias: str) -> tuple[str | None, dict[str, str]]:  # noqa: ANN001
    """The version the alias names today (None: none), and the registered model's tags (its
    history and pin); what the store cannot say is left out."""
    from mlflow.exceptions import MlflowException

    try:
        champion_now = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        champion_now = None
    try:
        model_tags = dict(client.get_registered_model(name).tags)
    except MlflowException:
        model_tags = {}
    return champion_now, model_tags


def _run_of(root: Path, side: Side, run_file: str, uri: str) -> Run | str:
    import mlflow
    from mlflow.exceptions import MlflowException

    record = _run_file(root, side, run_file)
    if record is None:
        where = "the workspace" if side.sha is None else "DVC's cache (dvc pull it)"
        return f"no {run_file} in {where}: the run cannot be found"
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(str(record.get("experiment_name")))
    if experiment is None:
        return f"no experiment {record.get('experiment_name')!r} in the store"
    digest = str(record.get("model_sha256"))
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.{MODEL_DIGEST_TAG} = '{digest}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not found:
        return f"no run in the store trained the model with sha256 {digest[:12]}…"
    run = found[0]
    link = None
    if uri.startswith(("http://", "https://")):
        link = f"{uri.rstrip('/')}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
    named = _export_params(side)
    if named is None:
        return f"{PARAMS_FILE} names no export.registered_model_name and champion_alias"
    name, alias = named
    try:
        listed = client.search_model_versions(f"name = '{name}' and run_id = '{run.info.run_id}'")
    except MlflowException:
        listed = []
    # a search leaves the aliases out: each version is read whole
    versions = tuple(
        Version(
            str(full.version),
            tuple(sorted(full.aliases or ())),
            VersionTags.from_tags(full.tags),
        )
        for full in (
            client.get_model_version(name, str(v.version))
            for v in sorted(listed, key=lambda v: int(v.version))
            if VersionTags.from_tags(v.tags).precision == FP32
        )
    )
    champion_now, model_tags = _champion_now(client, name, alias)
    return Run(
        name=run.info.run_name or run.info.run_id,
        run_id=run.info.run_id,
        link=link,
        registered_name=name,
        champion_alias=alias,
        champion_now=champion_now,
        versions=versions,
        champion_moves=tuple(history(model_tags, alias)[-LAST_MOVES:]),
        champion_pin=pin_of(model_tags, alias),
    )
