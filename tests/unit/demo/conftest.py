"""``demo`` is no installed package (it is an optional capability run from the project root):
its modules are imported with the project root on the path."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from factories.processes import REPO_ROOT


@pytest.fixture
def serve(monkeypatch) -> ModuleType:
    """``demo.serve``, imported from the project root."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return importlib.import_module("demo.serve")


@pytest.fixture
def answers(monkeypatch) -> ModuleType:
    """``demo.answers``, imported from the project root."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return importlib.import_module("demo.answers")


@pytest.fixture
def feedback(monkeypatch) -> ModuleType:
    """``demo.feedback``, imported from the project root."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return importlib.import_module("demo.feedback")
