"""The team server's ``authorization_function``: MLflow's basic auth, and what MLflow's own
permissions leave open closed.

Runs inside ``mlflow server`` (``basic_auth.ini`` names it), in front of MLflow's
per-resource validators, which still decide every read and write. On top of them:

- a login refused because the user store's database is down (PostgreSQL restarting) is a
  503, which clients retry, not a 401 that blames the password;
- only HTTP basic credentials: any other ``Authorization`` (a ``Bearer`` token from
  ``MLFLOW_TRACKING_TOKEN``) is a 401 saying so, where MLflow's credential cache answered
  500 (mlflow 3.17's ``_auth_cache_key`` takes the missing password for a string);
- the MLflow Assistant is off for everyone: it writes settings into the server's home and
  runs tools on the host, and MLflow has no switch to turn it off;
- a user with no role (``python -m team member add``) may only ask who they are;
- only members and maintainers create experiments and registered models (MLflow lets any
  user create them when workspaces are off, and makes the creator their manager), and
  only the admin chooses an experiment's artifact location: anyone else's would get
  upload URLs into any bucket the server's keys open, the DVC remote's included;
- who did what cannot be forged: a run must carry ``mlflow.user`` (``mlflow.start_run``
  sets it from ``MLFLOW_TRACKING_USERNAME``), and it and a version's
  ``registered_by`` / ``promoted_by`` tags must name the member who sends them.
"""

from __future__ import annotations

from flask import Response, g, request
from mlflow.exceptions import MlflowException
from mlflow.protos.model_registry_pb2 import (
    CreateModelVersion,
    DeleteModelVersionTag,
    SetModelVersionTag,
)
from mlflow.protos.service_pb2 import CreateExperiment, CreateRun, DeleteTag, LogBatch, SetTag
from mlflow.server import auth
from werkzeug.datastructures import Authorization

from team.roles import WHO_TAGS, WRITER_ROLES

ASSISTANT = "/mlflow/assistant"
OWN_LOGIN = ("/mlflow/users/current",)
CREATES = ("/mlflow/experiments/create", "/mlflow/registered-models/create")


def _refuse(status: int, line: str) -> Response:
    response = Response(line + "\n", status=status, mimetype="text/plain")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="mlflow"'
    return response


def authenticate() -> Authorization | Response:
    # MLflow asks again within one request (``sender_is_admin``, the validators): the
    # answer is kept for the request, not worked out anew with its database queries
    if "team_authorization" not in g:
        g.team_authorization = _authenticate()
    return g.team_authorization


def _authenticate() -> Authorization | Response:
    header = request.headers.get("Authorization", "")
    if header and not header.lower().startswith("basic "):
        return _refuse(
            401, "only HTTP basic credentials are accepted: a member's name and password"
        )
    try:
        authorization = auth.authenticate_request_basic_auth()
    except Exception:
        return _store_down()
    if not isinstance(authorization, Authorization):
        if request.authorization is not None and not _store_answers():
            return _store_down()
        return authorization
    try:
        user = auth.store.get_user(authorization.username)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            return _store_down()
        # removed while the server's credential cache still trusted the password
        return auth.make_basic_auth_response()
    except Exception:
        return _store_down()
    try:
        refusal = _refusal(user)
    except MlflowException as err:
        if err.error_code == "INVALID_PARAMETER_VALUE":
            return _refuse(400, f"malformed request: {str(err.message).splitlines()[0]}")
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return authorization  # MLflow's own handler answers the 404
        return _store_down()
    except Exception:
        return _store_down()
    return refusal if refusal is not None else authorization


def _store_answers() -> bool:
    """A refused login is a wrong password only if the user store could be asked at all."""
    try:
        auth.store.list_users()
    except Exception:
        return False
    return True


def _store_down() -> Response:
    # 503, not 401: MLflow's client retries it, and a member's password is not to blame
    return _refuse(503, "the team server's database does not answer; retry in a moment")


def _refusal(user) -> Response | None:  # noqa: ANN001 - MLflow's auth User entity
    path = request.path
    if ASSISTANT in path:
        return _refuse(403, "the MLflow Assistant is off on the team server")
    if user.is_admin:
        return None
    roles = {role.name for role in auth.store.list_user_roles(user.id)}
    if not roles:
        if path.endswith(OWN_LOGIN) or path in ("/", "/health", "/version"):
            return None
        return _refuse(403, f"user {user.username!r} has no role on this server yet: ask the admin")
    if request.method not in ("POST", "PATCH", "DELETE"):
        return None
    if path.endswith(CREATES):
        if not roles & WRITER_ROLES:
            return _refuse(
                403, f"user {user.username!r} is a reader: creating needs the member role"
            )
        if path.endswith("/experiments/create") and _message(CreateExperiment).artifact_location:
            return _refuse(403, "only the admin chooses an experiment's artifact location")
    return _forged_identity(user.username, path)


def _message(message_type):  # noqa: ANN001, ANN202 - a protobuf message class and instance
    """The request as the handler will read it: MLflow's own parser (double-encoded JSON,
    both field spellings); a body it cannot read is refused by the caller's 400."""
    from mlflow.server.handlers import _get_request_message

    return _get_request_message(message_type())


def _forged_identity(username: str, path: str) -> Response | None:
    """Authorship tags name their sender, once: none set for another, none changed or
    deleted after (a member may edit others' runs, not sign them)."""
    claims: list[str] = []
    if path.endswith("/mlflow/runs/create"):
        created = _message(CreateRun)
        # MLflow's client sends user_id "unknown" unless the run is tagged mlflow.user
        authors = [t.value for t in created.tags if t.key == "mlflow.user"]
        if not authors:
            return _refuse(403, "a run must name its author: tag mlflow.user with your name")
        claims += authors
        if created.user_id not in ("", "unknown"):
            claims.append(created.user_id)
    elif path.endswith("/mlflow/model-versions/create"):
        claims += [t.value for t in _message(CreateModelVersion).tags if t.key in WHO_TAGS]
    elif path.endswith(("/mlflow/runs/delete-tag", "/mlflow/model-versions/delete-tag")):
        kind = DeleteTag if "/runs/" in path else DeleteModelVersionTag
        if _message(kind).key in WHO_TAGS:
            return _refuse(403, "authorship tags cannot be deleted: ask the admin")
    elif path.endswith("/mlflow/runs/set-tag"):
        tag = _message(SetTag)
        if tag.key in WHO_TAGS:
            claims.append(tag.value)
            claims += _existing(_run_tags(tag.run_id), tag.key)
    elif path.endswith("/mlflow/runs/log-batch"):
        batch = _message(LogBatch)
        signed = [t for t in batch.tags if t.key in WHO_TAGS]
        if signed:
            current = _run_tags(batch.run_id)
            for tag in signed:
                claims += [tag.value, *_existing(current, tag.key)]
    elif path.endswith("/mlflow/model-versions/set-tag"):
        tag = _message(SetModelVersionTag)
        if tag.key in WHO_TAGS:
            from mlflow.server.handlers import _get_model_registry_store

            version = _get_model_registry_store().get_model_version(tag.name, tag.version)
            claims += [tag.value, *_existing(dict(version.tags), tag.key)]
    if any(claim != username for claim in claims):
        return _refuse(403, f"user {username!r} may not record another member as the author")
    return None


def _run_tags(run_id: str) -> dict[str, str]:
    from mlflow.server.handlers import _get_tracking_store

    return dict(_get_tracking_store().get_run(run_id).data.tags)


def _existing(tags: dict[str, str], key: str) -> list[str]:
    """The author a tag names already, if any: changing it is signing for someone else."""
    return [tags[key]] if key in tags else []
