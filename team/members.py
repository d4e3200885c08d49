"""``python -m team member ...``: the team's members, kept in MLflow's own user store.

Every call goes to the server's auth API as ``admin`` (password from
``MLFLOW_AUTH_ADMIN_PASSWORD``, else the one ``.team/settings.env`` keeps), so only whoever
holds it manages members. A member's password is made here and shown once, or read
from standard input; it is stored nowhere but in MLflow's user store, as a hash.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from dataclasses import dataclass

from kernel.cli import CommandError
from team.roles import RESOURCE_TYPES, ROLE_PERMISSIONS, WORKSPACE
from team.settings import ADMIN, Settings

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class AdminClient:
    """The server's auth API, as the admin."""

    base: str
    password: str

    def call(self, method: str, path: str, payload: dict | None = None, params: dict | None = None):  # noqa: ANN201
        import requests

        try:
            response = requests.request(
                method, self.base + path, json=payload, params=params,
                auth=(ADMIN, self.password), timeout=30,
            )  # fmt: skip
        except requests.RequestException as err:
            raise CommandError(
                f"MLflow server {self.base} unreachable ({type(err).__name__}): "
                "start the stack with `make team-up`"
            ) from None
        if response.status_code == 401:
            raise CommandError(
                f"MLflow server {self.base} refused the admin's password (401): set "
                "MLFLOW_AUTH_ADMIN_PASSWORD to the one in .team/settings.env"
            )
        if response.status_code >= 400:
            raise CommandError(f"MLflow server {self.base}: {_message(response)}")
        return response.json() if response.content else {}


def _message(response) -> str:  # noqa: ANN001 - a requests.Response
    try:
        body = response.json()
        text = body.get("message") or body.get("error_code") or response.text
    except ValueError:
        text = response.text
    return (str(text).strip().splitlines() or [f"HTTP {response.status_code}"])[0]


def admin_client(settings: Settings) -> AdminClient:
    password = (
        os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD")
        or settings.secrets["MLFLOW_AUTH_ADMIN_PASSWORD"]
    )
    return AdminClient(settings.tracking_uri, password)


# --- roles --------------------------------------------------------------------------------------


def ensure_roles(client: AdminClient) -> dict[str, int]:
    """The three roles with their wildcard grants, made or completed if missing (a start cut
    short between the two); their ids by name."""
    listed = client.call("GET", "/api/3.0/mlflow/roles/list", params={"workspace": WORKSPACE})
    found = {role["name"]: role for role in listed.get("roles", [])}
    roles: dict[str, int] = {}
    for name, permission in ROLE_PERMISSIONS.items():
        if name not in found:
            found[name] = client.call(
                "POST", "/api/3.0/mlflow/roles/create",
                {"name": name, "workspace": WORKSPACE, "description": f"team {name}"},
            )["role"]  # fmt: skip
        roles[name] = int(found[name]["id"])
        granted = {
            (grant["resource_type"], grant["resource_pattern"], grant["permission"])
            for grant in found[name].get("permissions") or []
        }
        for resource_type in RESOURCE_TYPES:
            if (resource_type, "*", permission) not in granted:
                client.call(
                    "POST", "/api/3.0/mlflow/roles/permissions/add",
                    {"role_id": roles[name], "resource_type": resource_type,
                     "resource_pattern": "*", "permission": permission},
                )  # fmt: skip
    return roles


# --- what members share -------------------------------------------------------------------------

# the experiment page the MLflow UI shows for a classic model's runs
MODEL_TRAINING_KIND = [{"key": "mlflow.experimentKind", "value": "custom_model_development"}]


def _exists(client: AdminClient, resource: str, name: str) -> bool:
    found = client.call(
        "GET", f"/api/2.0/mlflow/{resource}/search",
        params={"filter": f"name = '{name}'", "max_results": 1},
    )  # fmt: skip
    return bool(found.get(resource.replace("-", "_")))


def add_experiment(client: AdminClient, name: str, announce: bool = False) -> None:
    """An experiment made by the admin: members log to it through their role's grant and
    manage none of it."""
    _add(client, "experiments", "experiment", name, {"tags": MODEL_TRAINING_KIND}, announce)


def add_registered_model(client: AdminClient, name: str, announce: bool = False) -> None:
    """A registered model made by the admin: members register versions and move aliases."""
    _add(client, "registered-models", "registered model", name, {}, announce)


def _add(client: AdminClient, resource: str, kind: str, name: str, extra: dict, announce: bool):  # noqa: ANN202
    if not name.strip():
        raise CommandError(f"a {kind} needs a name")
    exists = _exists(client, resource, name)
    if not exists:
        client.call("POST", f"/api/2.0/mlflow/{resource}/create", {"name": name, **extra})
    if announce:
        done = "exists already" if exists else "made; every member may use it"
        print(f"team: {kind} {name!r} {done}", file=sys.stderr)


# --- members ------------------------------------------------------------------------------------


def _users(client: AdminClient) -> dict[str, dict]:
    return {
        user["username"]: user for user in client.call("GET", "/api/2.0/mlflow/users/list")["users"]
    }


def _checked_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise CommandError(
            f"member name {name!r} is not valid: expected letters, digits, '.', '_' or '-', "
            "at most 64, beginning with a letter or digit"
        )
    if name == ADMIN:
        raise CommandError(f"{ADMIN!r} is the stack's administrator, not a member")
    return name


def _new_password(from_stdin: bool) -> tuple[str, bool]:
    """A password read from stdin (one line), else made here; and whether to show it."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if len(password) < 12:
            raise CommandError("the password on standard input is shorter than 12 characters")
        return password, False
    return secrets.token_urlsafe(18), True


def add(settings: Settings, name: str, role: str, password_stdin: bool) -> None:
    name = _checked_name(name)
    if role not in ROLE_PERMISSIONS:
        raise CommandError(f"unknown role {role!r}: expected one of {', '.join(ROLE_PERMISSIONS)}")
    client = admin_client(settings)
    roles = ensure_roles(client)
    users = _users(client)
    if name in users and users[name].get("roles"):
        raise CommandError(
            f"member {name!r} exists already: `member passwd {name}` sets a new password"
        )
    if name in users:  # an add cut short between the user and its role
        client.call(
            "POST", "/api/3.0/mlflow/roles/assign", {"username": name, "role_id": roles[role]}
        )
        print(f"team: member {name} had no role; now {role}", file=sys.stderr)
        return
    password, show = _new_password(password_stdin)
    client.call("POST", "/api/2.0/mlflow/users/create", {"username": name, "password": password})
    client.call("POST", "/api/3.0/mlflow/roles/assign", {"username": name, "role_id": roles[role]})
    print(f"team: member {name} added as {role}", file=sys.stderr)
    if show:
        _show_credentials(settings, name, password)


def _show_credentials(settings: Settings, name: str, password: str) -> None:
    print("team: the password is shown this once; give these lines to the member:", file=sys.stderr)
    print(f"export MLFLOW_TRACKING_URI={settings.tracking_uri}")
    print(f"export MLFLOW_TRACKING_USERNAME={name}")
    print(f"export MLFLOW_TRACKING_PASSWORD={password}")


def passwd(settings: Settings, name: str, password_stdin: bool) -> None:
    name = _checked_name(name)
    client = admin_client(settings)
    if name not in _users(client):
        raise CommandError(f"no member {name!r}: `member add {name} --role ...` adds one")
    password, show = _new_password(password_stdin)
    client.call(
        "PATCH", "/api/2.0/mlflow/users/update-password", {"username": name, "password": password}
    )
    print(f"team: member {name} has a new password", file=sys.stderr)
    if show:
        _show_credentials(settings, name, password)


def remove(settings: Settings, name: str) -> None:
    name = _checked_name(name)
    client = admin_client(settings)
    if name not in _users(client):
        raise CommandError(f"no member {name!r}")
    client.call("DELETE", "/api/2.0/mlflow/users/delete", {"username": name})
    print(f"team: member {name} removed; their runs and versions stay", file=sys.stderr)


def listing(settings: Settings) -> None:
    client = admin_client(settings)
    for name, user in sorted(_users(client).items()):
        if user.get("is_admin"):
            role = "admin"
        else:
            names = sorted(
                r["name"] for r in user.get("roles", []) if r["name"] in ROLE_PERMISSIONS
            )
            role = ",".join(names) or "(no role)"
        print(f"{name}\t{role}")
