"""The design's rules on imports, read from the source: arrows point down the layers, no code
outside tests/ imports the tests' code or edits ``sys.path``, and no import circles.

Each rule is checked on the project, then shown to catch a breach in a tiny tree of its own.
"""

from __future__ import annotations

from pathlib import Path

from factories.import_graph import (
    import_circles,
    import_graph,
    imports_of_test_code,
    project_packages,
    sys_path_edits_in,
    upward_imports,
    write_tree,
)

# Lower numbers lie lower: a package may import its own layer and those below, never above.
LAYERS = {
    # what every entry point shares, and the TF-free deployment side
    "kernel": 0,
    "digits_predict": 0,
    # MLflow access, and the correction record the page, a stage and a server share
    "tracking": 1,
    "feedback": 1,
    # what the DVC pipeline runs
    "stages": 2,
    # the capabilities built on the pipeline, and what drives the project from outside
    "serving": 3,
    "demo": 3,
    "team": 3,
    "sweep": 3,
    "monitor": 3,
    "report": 3,
    "bench": 3,
    "harness": 3,
}


def test_every_package_has_a_layer() -> None:
    assert set(project_packages()) <= set(LAYERS), "a new package: give it a layer in LAYERS"


def test_no_import_points_up_a_layer() -> None:
    assert upward_imports(import_graph(), LAYERS) == []


def test_an_import_up_a_layer_is_found(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "stages/__init__.py": "",
            "stages/train.py": "def main():\n    from serving.app import serve\n",
            "serving/__init__.py": "",
            "serving/app.py": "from stages import train\n",
            "extra/__init__.py": "",
        },
    )
    found = upward_imports(import_graph(root), LAYERS)
    assert found == ["extra: its package has no layer", "stages.train -> serving.app"]


def test_nothing_outside_tests_imports_the_tests_code() -> None:
    assert imports_of_test_code() == []


def test_an_import_of_the_tests_code_is_found(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "bench/__init__.py": "",
            "bench/run.py": "def copy():\n    from factories.workspace import project_copy\n",
            "bench/types.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    import tests.conftest\n",
        },
    )
    assert imports_of_test_code(root) == [
        "bench.run: factories.workspace",
        "bench.types: tests.conftest",
    ]


def test_nothing_outside_tests_edits_sys_path() -> None:
    assert sys_path_edits_in() == []


def test_every_way_of_editing_sys_path_is_found(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "bench/__init__.py": "import sys\nsys.path.insert(0, 'tests')\n",
            "bench/run.py": "import sys\n"
            "def main():\n    sys.path.append('x')\n"
            "sys.path = ['y']\n"
            "sys.path[0] = 'z'\n"
            "sys.path += ['w']\n"
            "from sys import path\n"
            "print(sys.path)\n",  # reading it is no edit
        },
    )
    assert sys_path_edits_in(root) == ["bench:2", "bench.run:3", "bench.run:4", "bench.run:5",
                                       "bench.run:6", "bench.run:7"]  # fmt: skip


def test_no_import_circles() -> None:
    circles = import_circles(import_graph())
    assert circles == [], f"import circles: {circles}"


def test_an_import_circle_is_found_through_lazy_and_relative_imports(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "serving/__init__.py": "",
            "serving/__main__.py": "from serving.reload import watch\n",
            "serving/reload.py": "def watch():\n    from . import app\n",
            "serving/app.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from serving.__main__ import main\n",
            "serving/alone.py": "from serving import app\n",
        },
    )
    assert import_circles(import_graph(root)) == [
        ["serving.__main__", "serving.app", "serving.reload"]
    ]
