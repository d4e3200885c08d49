"""The team's MLflow server app: MLflow's basic-auth app, answering its own origin alone.

MLflow trusts every loopback origin whatever it is told (``--cors-allowed-origins`` only
adds to them): a page on any local port could then act with the login a browser holds.
Here a request that carries another ``Origin`` is refused before MLflow sees it, a CORS
preflight included, so no other origin gets a CORS grant. ``mlflow server --app-name
team-basic-auth`` runs it (the ``mlflow.app`` entry point in ``pyproject.toml``); the
origins are those of ``MLFLOW_SERVER_CORS_ALLOWED_ORIGINS``, which ``team.mlflow_server``
sets to the server's own.

One of MLflow's validators is replaced: removing an alias needs what moving it needs
(EDIT, the member role), not MANAGE. ``@int8`` follows ``@champion`` and is removed when
the champion has no int8 twin, which a member's export or promotion does; a member who
may point an alias at any version gains nothing by being able to remove it.
"""

from __future__ import annotations

import os

ORIGINS_VARIABLE = "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"


class OwnOriginOnly:
    """ASGI middleware: a request whose ``Origin`` is not one of ``origins`` gets a 403."""

    def __init__(self, app, origins: frozenset[str]) -> None:  # noqa: ANN001 - an ASGI app
        self.app = app
        self.origins = origins

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI
        if scope["type"] == "http":
            origin = dict(scope.get("headers") or []).get(b"origin")
            if origin is not None and origin.decode("latin-1") not in self.origins:
                line = (
                    f"requests from the origin {origin.decode('latin-1')!r} are refused: "
                    "the team's MLflow server answers its own pages alone\n"
                ).encode()
                await send({
                    "type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", str(len(line)).encode())],
                })  # fmt: skip
                await send({"type": "http.response.body", "body": line})
                return
        await self.app(scope, receive, send)


def origins_from_environment() -> frozenset[str]:
    listed = os.environ.get(ORIGINS_VARIABLE, "")
    origins = frozenset(origin.strip() for origin in listed.split(",") if origin.strip())
    if not origins or "*" in origins:
        raise RuntimeError(f"{ORIGINS_VARIABLE} must list the server's own origins, not {listed!r}")
    return origins


def alias_removal_as_a_move() -> int:
    """Let whoever may move an alias remove it; how many of MLflow's routes changed."""
    from mlflow.server import auth

    removal = auth.validate_can_delete_model_or_prompt_version_alias
    changed = 0
    for route, validator in auth.BEFORE_REQUEST_VALIDATORS.items():
        if validator is removal:
            auth.BEFORE_REQUEST_VALIDATORS[route] = (
                auth.validate_can_set_model_or_prompt_version_alias
            )
            changed += 1
    return changed


def create_app():  # noqa: ANN201 - an ASGI app
    """The app factory ``mlflow server`` (uvicorn ``--factory``) calls in its worker."""
    from mlflow.server.auth import create_app as basic_auth_app

    if alias_removal_as_a_move() == 0:
        raise RuntimeError(
            "MLflow's alias-removal validator was not found: the team app needs updating"
        )
    return OwnOriginOnly(basic_auth_app(), origins_from_environment())
