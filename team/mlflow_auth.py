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
        refusal = _refusal(user)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            return _store_down()
        # removed while another server worker still trusted the password it cached
        return auth.make_basic_auth_response()
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
    body = request.get_json(silent=True) if request.method == "POST" else None
    body = body if isinstance(body, dict) else {}
    if path.endswith(CREATES):
        if not roles & WRITER_ROLES:
            return _refuse(
                403, f"user {user.username!r} is a reader: creating needs the member role"
            )
        if body.get("artifact_location"):
            return _refuse(403, "only the admin chooses an experiment's artifact location")
    return _forged_identity(user.username, path, body)


def _forged_identity(username: str, path: str, body: dict) -> Response | None:
    claims: list[str] = []
    if path.endswith("/mlflow/runs/create"):
        # MLflow's client sends user_id "unknown" unless the run is tagged mlflow.user
        tags = body.get("tags") or []
        authors = [t.get("value", "") for t in tags if t.get("key") == "mlflow.user"]
        if not authors:
            return _refuse(403, "a run must name its author: tag mlflow.user with your name")
        claims += authors
        if body.get("user_id") not in (None, "", "unknown"):
            claims.append(str(body["user_id"]))
    elif path.endswith(("/mlflow/runs/set-tag", "/mlflow/model-versions/set-tag")):
        if body.get("key") in WHO_TAGS:
            claims.append(str(body.get("value", "")))
    elif path.endswith("/mlflow/model-versions/create"):
        claims += [t.get("value", "") for t in body.get("tags") or [] if t.get("key") in WHO_TAGS]
    elif path.endswith("/mlflow/runs/log-batch"):
        claims += [t.get("value", "") for t in body.get("tags") or [] if t.get("key") in WHO_TAGS]
    if any(claim != username for claim in claims):
        return _refuse(403, f"user {username!r} may not record another member as the author")
    return None
