"""The team server's routes by the table of ``team.route_table``: which route a request is,
who may call it, which of its fields name a resource; and the routes a live server serves,
to check that the table classifies every one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from team.route_table import TABLE

ROLES = ("public", "login", "reader", "member", "maintainer", "admin")
KINDS = ("run", "experiment", "model", "version", "logged_model")
_AJAX = re.compile(r"^/ajax-api/")


@dataclass(frozen=True)
class Route:
    who: str  # the least role that may call it
    method: str
    path: str  # as Flask writes it, under /api/
    names: tuple[str, ...] = ()  # the kinds of resource its fields name
    optional: tuple[str, ...] = ()  # those of them a request may leave out


def _parse(table: str) -> tuple[Route, ...]:
    routes = []
    for line in table.strip().splitlines():
        who, method, path, *kinds = line.split()
        names = tuple(kind.rstrip("?") for kind in kinds)
        unknown = {who} - set(ROLES) | set(names) - set(KINDS)
        if unknown:
            raise ValueError(f"route table: {line!r}: unknown {sorted(unknown)}")
        optional = tuple(kind.rstrip("?") for kind in kinds if kind.endswith("?"))
        routes.append(Route(who, method, path, names, optional))
    return tuple(routes)


ROUTES = _parse(TABLE)


def normalized(path: str) -> str:
    """The UI's ``/ajax-api/`` routes are the clients' ``/api/`` ones."""
    return _AJAX.sub("/api/", path)


@cache
def _adapter():  # noqa: ANN202 - werkzeug's MapAdapter
    from werkzeug.routing import Map, Rule

    rules = [Rule(r.path, methods=[r.method], endpoint=i) for i, r in enumerate(ROUTES)]
    return Map(rules, strict_slashes=False, merge_slashes=False).bind("team")


def classify(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route a request is, and the values of its path's variables; None: not in the table."""
    from werkzeug.exceptions import HTTPException
    from werkzeug.routing import RequestRedirect

    method = "GET" if method == "HEAD" else method
    try:
        index, variables = _adapter().match(normalized(path), method)
    except (HTTPException, RequestRedirect):
        return None
    return ROUTES[index], variables


def allows(who: str, roles: set[str]) -> bool:
    """Whether a user holding ``roles`` (role names, no admin) may call a route for ``who``."""
    if who in ("public", "login"):
        return True
    held = [ROLES.index(role) for role in roles if role in ROLES]
    return bool(held) and max(held) >= ROLES.index(who) and who != "admin"


# --- the live server's routes --------------------------------------------------------------


def _template(path: str) -> str:
    """A FastAPI path in Flask's spelling: ``{name:path}`` → ``<path:name>``."""
    path = re.sub(r"\{(\w+):path\}", r"<path:\1>", path)
    return re.sub(r"\{(\w+)\}", r"<\1>", path)


def _fastapi_routes(routes, prefix: str = ""):  # noqa: ANN001, ANN202 - starlette routes
    from starlette.routing import Mount

    for route in routes:
        if isinstance(route, Mount):  # the Flask app, walked on its own
            continue
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _fastapi_routes(included.routes, prefix + route.include_context.prefix)
            continue
        for method in getattr(route, "methods", None) or ():
            yield method, _template(prefix + route.path)


def live_routes(asgi_app, flask_app) -> set[tuple[str, str]]:  # noqa: ANN001 - the apps
    """Every (method, path) the server serves: FastAPI's own routes and Flask's URL map."""
    served = set(_fastapi_routes(asgi_app.routes))
    for rule in flask_app.url_map.iter_rules():
        served.update((method, rule.rule) for method in rule.methods)
    return {
        (method, normalized(path))
        for method, path in served
        if method not in ("HEAD", "OPTIONS")  # answered by the framework, with no handler
    }


def unclassified(served: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """The routes served that the table does not name."""
    known = {(route.method, route.path) for route in ROUTES}
    return sorted(served - known, key=lambda pair: (pair[1], pair[0]))
