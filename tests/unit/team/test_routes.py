"""The team server's route table: every request is one route or none, and each route says
who may call it and what its fields name."""

from __future__ import annotations

import asyncio

import pytest

from team import routes
from team.mlflow_app import OwnOriginOnly


@pytest.mark.parametrize(
    ("method", "path", "who", "names"),
    [
        ("POST", "/api/2.0/mlflow/runs/set-tag", "member", ("run",)),
        ("POST", "/ajax-api/2.0/mlflow/runs/set-tag", "member", ("run",)),
        ("GET", "/api/2.0/mlflow/runs/get", "reader", ("run",)),
        ("HEAD", "/api/2.0/mlflow/runs/get", "reader", ("run",)),
        ("POST", "/api/2.0/mlflow/model-versions/create", "member", ("model", "run")),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/m.onnx", "reader", ()),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/m.onnx", "member", ()),
        ("POST", "/api/2.0/mlflow/runs/delete", "maintainer", ("run",)),
        ("POST", "/api/2.0/mlflow/experiments/create", "admin", ()),
        ("POST", "/api/3.0/mlflow/mcp-servers", "admin", ()),
        ("POST", "/api/3.0/mlflow/users/permissions/grant", "admin", ()),
        ("GET", "/api/2.0/mlflow/users/current", "login", ()),
    ],
)
def test_a_request_is_the_route_the_table_names(method, path, who, names):
    route, _ = routes.classify(method, path)
    assert (route.who, route.names) == (who, names)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/2.0/mlflow/runs/set-tag"),  # a write's path, read
        ("POST", "/api/2.0/mlflow/runs/not-a-route"),
        ("GET", "/api/9.9/mlflow/runs/get"),
        ("DELETE", "/"),
    ],
)
def test_a_request_the_table_does_not_name_is_no_route(method, path):
    assert routes.classify(method, path) is None


def test_path_variables_are_read_from_the_path():
    route, variables = routes.classify("PATCH", "/api/2.0/mlflow/logged-models/m-0123/tags")
    assert route.names == ("logged_model",) and variables == {"model_id": "m-0123"}


@pytest.mark.parametrize(
    ("who", "roles", "allowed"),
    [
        ("reader", {"reader"}, True),
        ("member", {"reader"}, False),
        ("member", {"member"}, True),
        ("member", {"maintainer"}, True),
        ("maintainer", {"member"}, False),
        ("admin", {"maintainer"}, False),
        ("reader", set(), False),
        ("login", set(), True),
        ("reader", {"some-other-role"}, False),
    ],
)
def test_a_role_calls_what_its_rank_allows(who, roles, allowed):
    assert routes.allows(who, roles) is allowed


def test_a_table_line_with_an_unknown_role_or_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown"):
        routes._parse("boss GET /x")
    with pytest.raises(ValueError, match="unknown"):
        routes._parse("reader GET /x  runner")


def test_served_routes_the_table_does_not_name_are_listed():
    served = {("GET", "/api/2.0/mlflow/runs/get"), ("POST", "/api/9.0/new/route")}
    assert routes.unclassified(served) == [("POST", "/api/9.0/new/route")]


def _call(headers: list[tuple[bytes, bytes]], scope_type: str = "http") -> tuple[list, list]:
    reached, sent = [], []

    async def inner(scope, receive, send):
        reached.append(scope["type"])

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": scope_type, "headers": headers, "method": "GET", "path": "/"}
    asyncio.run(OwnOriginOnly(inner, frozenset({"http://127.0.0.1:5001"}))(scope, receive, send))
    return reached, sent


def test_only_the_servers_own_origin_reaches_mlflow():
    reached, sent = _call([(b"origin", b"http://127.0.0.1:9999")])
    assert reached == [] and sent[0]["status"] == 403
    assert b"access-control" not in b"".join(k for k, _ in sent[0]["headers"])
    assert b"127.0.0.1:9999" in sent[1]["body"]
    assert _call([(b"origin", b"null")])[0] == []
    assert _call([(b"origin", b"http://127.0.0.1:5001")])[0] == ["http"]
    assert _call([])[0] == ["http"]  # no Origin: not a cross-origin request
    assert _call([], "lifespan")[0] == ["lifespan"]
