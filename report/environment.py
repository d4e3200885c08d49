"""The versions of the pinned stack that made the review, read from the installed packages'
metadata (nothing is imported: TensorFlow alone would cost seconds)."""

from __future__ import annotations

import platform
from importlib import metadata

STACK = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "mlflow", "dvc")


def stack_versions() -> list[tuple[str, str]]:
    """(name, version) for Python and each package of ``STACK``; "not installed" if absent."""
    versions = [("python", platform.python_version())]
    for name in STACK:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            versions.append((name, "not installed"))
    return versions
