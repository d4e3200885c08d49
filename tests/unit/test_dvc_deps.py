"""dvc.yaml's code deps against each stage's import closure: a missing dep skips a rerun silently.

The closure is computed from the source (``factories.import_graph``: every ``import`` of a
project module, at module level or inside a function, but not under ``if TYPE_CHECKING:``),
following the imported modules and the packages that hold them. That no import points up
to an optional capability is checked with the other import rules (test_import_rules.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from factories.import_graph import import_closure as closure_of
from factories.import_graph import imported_names, write_tree
from kernel.paths import PROJECT_ROOT

PROJECT_PACKAGES = ("stages", "kernel", "tracking", "digits_predict", "serving", "feedback")
STAGES = ("fetch", "preprocess", "feedback", "train", "evaluate", "export", "quantize")


def import_closure(module: str, root: Path = PROJECT_ROOT) -> set[Path]:
    """The files of the stages' packages that running ``python -m <module>`` may execute."""
    return closure_of(module, root, PROJECT_PACKAGES)


def code_deps(stage: str, root: Path = PROJECT_ROOT) -> list[Path]:
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    deps = [root / dep for dep in pipeline["stages"][stage]["deps"]]
    return [dep for dep in deps if dep.suffix == ".py" or dep.is_dir()]


def covered(path: Path, deps: list[Path]) -> bool:
    return any(path == dep or dep in path.parents for dep in deps)


@pytest.mark.parametrize("stage", STAGES)
def test_every_module_a_stage_imports_is_one_of_its_deps(stage: str) -> None:
    closure = import_closure(f"stages.{stage}")
    deps = code_deps(stage)
    missing = sorted(
        str(path.relative_to(PROJECT_ROOT)) for path in closure if not covered(path, deps)
    )
    assert not missing, f"dvc.yaml stage {stage} imports these but lacks them in deps: {missing}"


@pytest.mark.parametrize("stage", STAGES)
def test_every_code_dep_of_a_stage_is_imported_by_it(stage: str) -> None:
    closure = import_closure(f"stages.{stage}")
    unused = sorted(
        str(dep.relative_to(PROJECT_ROOT))
        for dep in code_deps(stage)
        if not any(covered(path, [dep]) for path in closure)
    )
    assert not unused, f"dvc.yaml stage {stage} lists code it never imports: {unused}"


HEAVY = {"tensorflow", "keras", "tf2onnx", "mlflow", "onnx", "onnxruntime", "matplotlib"}


def top_level_packages_reached(module: str) -> set[str]:
    """Every top-level package the module's import closure names, lazy imports included."""
    return {
        name.split(".")[0]
        for path in import_closure(module)
        for name in imported_names(ast.parse(path.read_text(encoding="utf-8")))
    }


@pytest.mark.parametrize("stage", ["fetch", "preprocess", "feedback"])
def test_data_stages_never_import_tensorflow_mlflow_or_onnx(stage: str) -> None:
    """Not even lazily, inside a function: each costs seconds per stage run."""
    reached = top_level_packages_reached(f"stages.{stage}")
    assert not reached & HEAVY, f"{stage} reaches {sorted(reached & HEAVY)}"


TENSORFLOW = {"tensorflow", "keras", "tf2onnx", "tf_keras"}


@pytest.mark.parametrize("stage", ["evaluate", "quantize"])
def test_stages_after_the_handoff_never_import_tensorflow(stage: str) -> None:
    """They run the handed-off ONNX model: loading TensorFlow would cost seconds per run."""
    reached = top_level_packages_reached(f"stages.{stage}")
    assert {"onnxruntime", "mlflow"} <= reached, "the checker does not see what the stage uses"
    assert not reached & TENSORFLOW, f"{stage} reaches {sorted(reached & TENSORFLOW)}"


# --- the checker itself, on a tiny project of its own ---------------------------------------------


def test_closure_follows_lazy_imports_and_packages_but_not_type_checking(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "stages/__init__.py": "",
            "stages/fetch.py": "from stages.common import errors\n"
            "def main():\n    import stages.data.lazy\n",
            "stages/common/__init__.py": "",
            "stages/common/errors.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    import stages.heavy\n",
            "stages/data/__init__.py": "",
            "stages/data/lazy.py": "import numpy\n",
            "stages/heavy.py": "",
        },
    )
    closure = {str(path.relative_to(root)) for path in import_closure("stages.fetch", root)}
    assert closure == {
        "stages/__init__.py",
        "stages/fetch.py",
        "stages/common/__init__.py",
        "stages/common/errors.py",
        "stages/data/__init__.py",
        "stages/data/lazy.py",
    }


def test_a_missing_dep_is_reported(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "stages/__init__.py": "",
            "stages/fetch.py": "from kernel.cli import CommandError\n",
            "kernel/__init__.py": "",
            "kernel/cli.py": "",
        },
    )
    deps = [root / "stages/__init__.py", root / "stages/fetch.py"]
    missing = [path for path in import_closure("stages.fetch", root) if not covered(path, deps)]
    assert sorted(p.name for p in missing) == ["__init__.py", "cli.py"]
    assert all(covered(p, [*deps, root / "kernel"]) for p in missing)
