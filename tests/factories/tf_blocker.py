"""Run Python code as on a deployment machine: TensorFlow, Keras, MLflow and onnx absent.

The deployment side (``digits_predict``) must work with onnxruntime, numpy and Pillow
alone. Uninstalling packages per test is not possible, so a fresh interpreter gets a
``sys.meta_path`` finder that makes every import of a blocked top-level package fail as
if it were not installed. Matching is on the exact top-level name, so ``onnx`` is blocked
while ``onnxruntime`` still imports.

Typical use from a test (the code runs in a subprocess, with this checkout importable)::

    result = run_blocked("from digits_predict.cli import main; raise SystemExit(main([...]))")
    assert result.returncode == 0, result.stderr

By default an import attempt is an error even when the code catches the ImportError
(``strict``): a swallowed ``import tensorflow`` still means the code reached for it. The
process then exits with ``BLOCKED_IMPORT_EXIT`` and names the modules on stderr.
"""

from __future__ import annotations

import importlib.abc
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

# the training side, and every optional capability: the predictor needs none of them
BLOCKED = frozenset(
    {"tensorflow", "keras", "tf_keras", "tf2onnx", "mlflow", "onnx", "stages", "tracking"}
    | {"serving", "demo", "team", "sweep", "bench", "pydantic", "yaml"}
)
BLOCKED_IMPORT_EXIT = 97

TESTS_DIR = Path(__file__).resolve().parents[1]


class ImportBlocker(importlib.abc.MetaPathFinder):
    """Fails imports of the given top-level packages (and their submodules); records tries."""

    def __init__(self, blocked: Iterable[str] = BLOCKED) -> None:
        self.blocked = frozenset(blocked)
        self.attempts: list[str] = []

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.partition(".")[0] in self.blocked:
            self.attempts.append(fullname)
            # ModuleNotFoundError is what a missing package raises, so code that handles
            # an absent optional dependency behaves exactly as it would in deployment.
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (blocked by tests/factories/tf_blocker.py)",
                name=fullname,
            )
        return None


def loaded_blocked_modules(
    blocked: Iterable[str] = BLOCKED, modules: Mapping[str, object] | None = None
) -> list[str]:
    """The modules in ``modules`` (default ``sys.modules``) that belong to a blocked package."""
    blocked = frozenset(blocked)
    modules = sys.modules if modules is None else modules
    return sorted(name for name in modules if name.partition(".")[0] in blocked)


def install(blocked: Iterable[str] = BLOCKED) -> ImportBlocker:
    """Put an ``ImportBlocker`` first on ``sys.meta_path`` of this interpreter.

    Refuses when a blocked package is imported already: blocking would then prove nothing.
    """
    already = loaded_blocked_modules(blocked)
    if already:
        raise RuntimeError(f"cannot block packages that are already imported: {already}")
    blocker = ImportBlocker(blocked)
    sys.meta_path.insert(0, blocker)
    return blocker


def exec_blocked(code: str, blocked: Iterable[str] = BLOCKED, strict: bool = True) -> None:
    """Install the blocker, then run ``code`` as ``__main__`` (called inside the subprocess)."""
    blocker = install(blocked)
    try:
        exec(compile(code, "<blocked-code>", "exec"), {"__name__": "__main__"})
    finally:
        # Runs on sys.exit too; a swallowed blocked import still fails the run.
        if strict and blocker.attempts:
            sys.stdout.flush()
            print(
                f"tf_blocker: code tried to import blocked module(s) {blocker.attempts}",
                file=sys.stderr,
                flush=True,
            )
            os._exit(BLOCKED_IMPORT_EXIT)


def blocked_command(code: str, blocked: Iterable[str] = BLOCKED, strict: bool = True) -> list[str]:
    """The argv that runs ``code`` under the blocker in a fresh interpreter."""
    launcher = (
        "from factories import tf_blocker; "
        f"tf_blocker.exec_blocked({code!r}, {sorted(blocked)!r}, strict={strict!r})"
    )
    return [sys.executable, "-c", launcher]


def run_blocked(
    code: str,
    *,
    blocked: Iterable[str] = BLOCKED,
    strict: bool = True,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` under the blocker in a subprocess; stdout and stderr are captured text.

    This checkout (for ``digits_predict``) and tests/ (for this module) are importable.
    """
    # here, not at the top: the subprocess imports this module before it blocks PyYAML
    from kernel.paths import PROJECT_ROOT

    python_path = os.pathsep.join(
        filter(None, [str(PROJECT_ROOT), str(TESTS_DIR), os.environ.get("PYTHONPATH")])
    )
    return subprocess.run(
        blocked_command(code, blocked, strict),
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": python_path},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
