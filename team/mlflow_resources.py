"""What a request to the team's MLflow server names, found in the stores before MLflow's
handler runs, and the rules on it that MLflow's own permissions do not keep.

Runs inside ``mlflow server`` (``team.mlflow_auth``). Every spelling of a field counts
(``run_id`` and ``run_uuid``, ``runId`` …), wherever the request carries it (path, query,
JSON body): they must agree, and what they name must exist, or the request is refused
before MLflow reads it. Then:

- a run, its artifacts and the models it logged are written by its author alone (the
  ``mlflow.user`` it carries); maintainers may delete and restore any;
- authorship tags name their sender, once: none set for another, none changed or deleted;
- a model version's source is inside the artifacts the server manages.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from flask import request
from mlflow.exceptions import MlflowException

from team.roles import WHO_TAGS
from team.routes import Route

SPELLINGS = {
    "run": ("run_id", "runId", "run_uuid", "runUuid", "source_run_id", "sourceRunId"),
    "experiment": ("experiment_id", "experimentId"),
    "model": ("name",),
    "version": ("version",),
    "logged_model": ("model_id", "modelId"),
}
# where a version's files may live: the server's own artifacts, never a bucket by name
MANAGED_SOURCES = ("runs:/", "models:/", "mlflow-artifacts:/")
# an alias's history and pin on its registered model (tracking.champion_history): each
# record names its sender in "by", and a recorded move is never rewritten or removed
_MOVE_RECORD = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*\.move\.")
_PIN_RECORD = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*\.pin$")
_RUN_ARTIFACT = re.compile(r"^\d+/(?P<run>[0-9a-f]{32})/artifacts(/|$)")
_MODEL_ARTIFACT = re.compile(r"^\d+/models/(?P<model>m-[0-9a-f]{32})/artifacts(/|$)")


class Refusal(Exception):
    """The request is refused before MLflow's handler: a status, an MLflow error code and
    one line."""

    def __init__(self, status: int, code: str, line: str) -> None:
        super().__init__(line)
        self.status, self.code, self.line = status, code, line


def _forbidden(line: str) -> Refusal:
    return Refusal(403, "PERMISSION_DENIED", line)


def _bad(line: str) -> Refusal:
    return Refusal(400, "INVALID_PARAMETER_VALUE", line)


@dataclass
class Named:
    """The resources one request names, found in the stores."""

    body: dict
    values: dict[str, str] = field(default_factory=dict)
    run: object | None = None  # mlflow.entities.Run
    logged_model: object | None = None  # mlflow.entities.LoggedModel


def _body() -> dict:
    if request.method == "GET" or not request.get_data(cache=True):
        return {}
    from mlflow.server.handlers import _get_normalized_request_json

    try:
        body = _get_normalized_request_json(request)
    except (ValueError, MlflowException):
        raise _bad("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise _bad("the request body is not a JSON object")
    return body


def _value(kind: str, variables: dict[str, str], body: dict) -> str | None:
    """The one value every spelling of ``kind`` in the request gives, or None if none does."""
    seen: set[str] = set()
    for spelling in SPELLINGS[kind]:
        found = [*request.args.getlist(spelling)]
        for source in (variables, body):
            if spelling in source:
                found.append(source[spelling])
        for value in found:
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise _bad(f"field {spelling!r} must be a string, not {type(value).__name__}")
            seen.add(str(value))
    if len(seen) > 1:
        raise _bad(f"the request names more than one {kind}: {sorted(seen)}")
    return seen.pop() if seen else None


def _missing(kind: str, value: str) -> Refusal:
    return Refusal(404, "RESOURCE_DOES_NOT_EXIST", f"no {kind.replace('_', ' ')} {value!r}")


def _find(kind: str, named: Named) -> None:
    from mlflow.server.handlers import _get_model_registry_store, _get_tracking_store

    value = named.values[kind]
    try:
        if kind == "run":
            named.run = _get_tracking_store().get_run(value)
        elif kind == "experiment":
            _get_tracking_store().get_experiment(value)
        elif kind == "logged_model":
            named.logged_model = _get_tracking_store().get_logged_model(value)
        elif kind == "model":
            _get_model_registry_store().get_registered_model(value)
        elif "model" in named.values:
            _get_model_registry_store().get_model_version(named.values["model"], value)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise _missing(kind, value) from None
        raise


def resolve(route: Route, variables: dict[str, str]) -> Named:
    """The resources the route's fields name, each found; a refusal if any is ambiguous,
    absent when required, or not there."""
    named = Named(body=_body() if route.names else {})
    for kind in route.names:
        value = _value(kind, variables, named.body)
        if value is None:
            if kind in route.optional:
                continue
            raise _bad(f"{route.method} {route.path} names no {kind.replace('_', ' ')}")
        named.values[kind] = value
    for kind in named.values:
        _find(kind, named)
    return named


# what only the admin creates, by the kind its ``name`` names: a member asking for one that
# exists gets MLflow's own answer (``mlflow.register_model`` asks before every version)
CREATES = {
    "/api/2.0/mlflow/experiments/create": "experiment",
    "/api/2.0/mlflow/registered-models/create": "registered model",
}


def already_there(route: Route) -> Refusal | None:
    """MLflow's RESOURCE_ALREADY_EXISTS for an admin's create of what exists already."""
    from mlflow.server.handlers import _get_model_registry_store, _get_tracking_store

    kind = CREATES.get(route.path)
    name = _body().get("name") if kind else None
    if not isinstance(name, str):
        return None
    if kind == "experiment":
        exists = _get_tracking_store().get_experiment_by_name(name) is not None
    else:
        try:
            _get_model_registry_store().get_registered_model(name)
            exists = True
        except MlflowException:
            exists = False
    if not exists:
        return None
    return Refusal(400, "RESOURCE_ALREADY_EXISTS", f"{kind} {name!r} already exists")


def author(run) -> str:  # noqa: ANN001 - mlflow.entities.Run
    return run.data.tags.get("mlflow.user") or run.info.user_id


def check(route: Route, named: Named, username: str, path: str) -> None:
    """The rules MLflow's permissions leave to us, for a non-admin's request."""
    if route.who == "member":
        _only_the_author_writes(named, username, path)
    _signed_by_the_sender(route, named, username)
    if route.path.endswith("/model-versions/create"):
        _managed_source(named)
    if route.path.endswith(("/registered-models/set-tag", "/registered-models/delete-tag")):
        _history_kept(route.path, named, username)


def _history_kept(path: str, named: Named, username: str) -> None:
    key = str(named.body.get("key", ""))
    is_move = bool(_MOVE_RECORD.match(key))
    if path.endswith("/delete-tag"):
        if is_move:
            raise _forbidden(f"{key} records a move of an alias: no one removes it")
        return
    if not (is_move or _PIN_RECORD.match(key)):
        return
    if is_move:
        from mlflow.server.handlers import _get_model_registry_store

        model = _get_model_registry_store().get_registered_model(named.values["model"])
        if key in model.tags:
            raise _forbidden(f"{key} records a move of an alias: no one rewrites it")
    try:
        by = json.loads(str(named.body.get("value")))["by"]
    except (json.JSONDecodeError, TypeError, KeyError):
        raise _bad(f"{key} must be a JSON record naming its sender in 'by'") from None
    if by != username:
        raise _forbidden(f"user {username!r} may not record a move of an alias as {by!r}")


# the routes that write into a run: its fields, its logged models, its artifacts
_WRITES_A_RUN = ("/mlflow/runs/", "/mlflow/logged-models", "/mlflow-artifacts/")


def _artifact_owner(path: str, named: Named) -> None:
    """The run or logged model an artifact path is under, found."""
    from mlflow.server.handlers import _get_tracking_store

    folder = path.split("/mlflow-artifacts/artifacts/", 1)[-1]
    if found := _RUN_ARTIFACT.match(folder):
        kind, value = "run", found["run"]
    elif found := _MODEL_ARTIFACT.match(folder):
        kind, value = "logged_model", found["model"]
    else:
        raise _forbidden("artifacts are written under a run's or a logged model's folder")
    try:
        if kind == "run":
            named.run = _get_tracking_store().get_run(value)
        else:
            named.logged_model = _get_tracking_store().get_logged_model(value)
    except MlflowException:
        raise _missing(kind, value) from None


def _only_the_author_writes(named: Named, username: str, path: str) -> None:
    if not any(part in path for part in _WRITES_A_RUN):
        return
    if "/mlflow-artifacts/artifacts/" in path:
        _artifact_owner(path, named)
    run = named.run
    if run is None and named.logged_model is not None and named.logged_model.source_run_id:
        from mlflow.server.handlers import _get_tracking_store

        run = _get_tracking_store().get_run(named.logged_model.source_run_id)
    if run is not None and author(run) != username:
        raise _forbidden(
            f"run {run.info.run_id} belongs to {author(run)!r}: only its author writes to it"
        )


def _signed_by_the_sender(route: Route, named: Named, username: str) -> None:
    """Authorship tags name their sender, once (a member may read others' runs, not sign
    for them)."""
    body, path = named.body, route.path
    if path.endswith("/runs/create"):
        authors = [t.get("value") for t in body.get("tags") or [] if t.get("key") == "mlflow.user"]
        if not authors:
            raise _forbidden("a run must name its author: tag mlflow.user with your name")
        claims = list(authors)
        # MLflow's client sends user_id "unknown" unless the run is tagged mlflow.user
        if body.get("user_id") not in (None, "", "unknown"):
            claims.append(body["user_id"])
    elif path.endswith(("/runs/delete-tag", "/model-versions/delete-tag")):
        if body.get("key") in WHO_TAGS:
            raise _forbidden("authorship tags cannot be deleted: ask the admin")
        claims = []
    else:
        claims = _tag_claims(path, body, named)
    if any(claim != username for claim in claims):
        raise _forbidden(f"user {username!r} may not record another member as the author")


def _tag_claims(path: str, body: dict, named: Named) -> list[str]:
    """The authors a write's tags name, and those the tags it would replace named."""
    if path.endswith("/runs/set-tag"):
        tags = [body]
    elif path.endswith(("/runs/log-batch", "/model-versions/create")):
        tags = body.get("tags") or []
    elif path.endswith("/model-versions/set-tag"):
        tags = [body]
    else:
        return []
    signed = [t for t in tags if isinstance(t, dict) and t.get("key") in WHO_TAGS]
    if not signed:
        return []
    current = _current_tags(path, named)
    claims = []
    for tag in signed:
        claims.append(str(tag.get("value")))
        if tag["key"] in current:  # changing it is signing for someone else
            claims.append(current[tag["key"]])
    return claims


def _current_tags(path: str, named: Named) -> dict[str, str]:
    if path.endswith("/model-versions/create"):
        return {}
    if named.run is not None:
        return dict(named.run.data.tags)
    from mlflow.server.handlers import _get_model_registry_store

    version = _get_model_registry_store().get_model_version(
        named.values["model"], named.values["version"]
    )
    return dict(version.tags)


def _managed_source(named: Named) -> None:
    source = named.body.get("source")
    if not isinstance(source, str) or not source.startswith(MANAGED_SOURCES):
        raise _forbidden(
            f"a version's source must be in the server's artifacts ({', '.join(MANAGED_SOURCES)}), "
            f"not {source!r}"
        )
    if ".." in source.split("/") or "%2e" in source.lower() or "\\" in source:
        raise _forbidden(f"a version's source may not climb out of its folder: {source!r}")
    if source.startswith("runs:/"):
        run_id = source.removeprefix("runs:/").split("/", 1)[0]
        if named.values.get("run", run_id) != run_id:
            raise _bad(f"source {source!r} names another run than run_id {named.values['run']!r}")
        from mlflow.server.handlers import _get_tracking_store

        try:
            _get_tracking_store().get_run(run_id)
        except MlflowException:
            raise _missing("run", run_id) from None
