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
- deny by default: a route is open to a role only if ``team.route_table`` says so, the
  admin alone may call the rest (creating experiments and registered models included:
  MLflow would make their creator a manager, free to delete others' runs or deny them);
- what a request names is found before MLflow's handler runs, and the rules on it that
  MLflow's permissions leave open are kept (``team.mlflow_resources``).
"""

from __future__ import annotations

import json

from flask import Response, g, request
from mlflow.exceptions import MlflowException
from mlflow.server import auth
from werkzeug.datastructures import Authorization

from team import mlflow_resources, routes

ASSISTANT = "/mlflow/assistant"
# MLflow's error codes, which its clients read from the body
CODES = {
    400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST", 503: "TEMPORARILY_UNAVAILABLE",
}  # fmt: skip


def _refuse(status: int, line: str, code: str | None = None) -> Response:
    body = json.dumps({"error_code": code or CODES[status], "message": line})
    response = Response(body + "\n", status=status, mimetype="application/json")
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
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":  # refused, never passed on
            return _refuse(404, f"not found: {str(err.message).splitlines()[0]}")
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
    found = routes.classify(request.method, path)
    if found is None:
        return _refuse(
            403, f"{request.method} {path} is open to the admin alone on the team server"
        )
    route, variables = found
    roles = {role.name for role in auth.store.list_user_roles(user.id)}
    if not roles and route.who not in ("public", "login"):
        return _refuse(403, f"user {user.username!r} has no role on this server yet: ask the admin")
    try:
        if routes.allows("member", roles) and (known := mlflow_resources.already_there(route)):
            raise known
        if not routes.allows(route.who, roles):
            needs = (
                "only the admin may" if route.who == "admin" else f"it needs the {route.who} role"
            )
            raise mlflow_resources.Refusal(
                403, CODES[403],
                f"user {user.username!r} ({', '.join(sorted(roles))}) may not "
                f"{request.method} {path}: {needs}",
            )  # fmt: skip
        named = mlflow_resources.resolve(route, variables)
        mlflow_resources.check(route, named, user.username, path)
    except mlflow_resources.Refusal as refusal:
        return _refuse(refusal.status, refusal.line, refusal.code)
    return None
