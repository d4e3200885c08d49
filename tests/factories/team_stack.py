"""The team stack as the tests use it: what their tiny pipelines log to made by the admin,
and this process's MLflow client logged in as one of its users."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from factories.params import TINY_EXPORT, TINY_TRAIN
from harness.team_stack import team_stack


def tiny_team_stack(
    folders: Sequence[str] = ("team",), params: dict[str, dict] | None = None
) -> contextlib.AbstractContextManager[dict]:
    """``harness.team_stack.team_stack`` with the tiny pipelines' experiment and model."""
    return team_stack(
        folders,
        params,
        experiments=(TINY_TRAIN["experiment_name"],),
        models=(TINY_EXPORT["registered_model_name"],),
    )


@contextlib.contextmanager
def logged_in(login: dict[str, str]) -> Iterator[None]:
    """This process's MLflow client as ``login`` (a member's exports, or the admin's), for a
    block; the environment as it was afterwards."""
    keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {key: os.environ.get(key) for key in keys}
    os.environ.update({key: login[key] for key in keys})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def settings_of(stack: dict):
    """The stack's settings as ``python -m team`` reads them (ports, secrets)."""
    from team.settings import load

    return load(stack["repo"])


def admin_login(stack: dict) -> dict[str, str]:
    password = settings_of(stack).secrets["MLFLOW_AUTH_ADMIN_PASSWORD"]
    return {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
