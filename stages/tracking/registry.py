"""The model registry: a version per exported ONNX model, and the alias that says which to use.

Logging the model, registering a version and moving the alias are separate steps on
purpose: export moves the alias only once the model's files are in place, and if
anything fails before that it withdraws the version and puts the alias back where it
was, so the registry never names a model that was not handed off. (MLflow deletes an
alias together with the version it points to, hence the explicit restore.) The same
helpers move ``@champion`` and record why, as version tags.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from stages.tracking.runs import retry_locked

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo


def log_onnx_model(
    model_bytes: bytes, example: np.ndarray, example_output: np.ndarray, providers: Sequence[str]
) -> ModelInfo:
    """Log the ONNX model to the open run (not yet registered), with its signature."""
    import mlflow
    import onnx
    import onnxruntime
    from mlflow.models import infer_signature

    example = example.astype(np.float32)
    return mlflow.onnx.log_model(
        onnx.load_from_string(model_bytes),
        name="onnx_model",
        signature=infer_signature(example, example_output),
        input_example=example,
        save_as_external_data=False,
        onnx_execution_providers=list(providers),
        pip_requirements=[f"onnxruntime=={onnxruntime.__version__}", f"onnx=={onnx.__version__}"],
    )


def register_version(model_uri: str, registered_name: str) -> str:
    """A new version of ``registered_name`` (created if new) for the logged model; its number."""
    import mlflow

    return str(mlflow.register_model(model_uri, registered_name).version)


def versions_of(model_uri: str, registered_name: str) -> list[str]:
    """The versions of ``registered_name`` made from the logged model ``model_uri``."""
    import mlflow

    client = mlflow.MlflowClient()
    found = retry_locked(
        lambda: client.search_model_versions(f"name = '{registered_name}'"),
        "listing model versions",
    )
    return [str(v.version) for v in found if v.source == model_uri]


def alias_target(registered_name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None when the model or the alias does not exist."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()

    def read() -> str | None:
        try:
            return str(client.get_model_version_by_alias(registered_name, alias).version)
        except MlflowException as err:
            # only "no such model or alias" means none; any other error must not pass for it
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    return retry_locked(read, f"reading alias @{alias} of {registered_name}")


def set_alias(registered_name: str, alias: str, version: str) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    retry_locked(
        lambda: client.set_registered_model_alias(registered_name, alias, version),
        "setting the registry alias",
    )


def withdraw(registered_name: str, versions: list[str], alias: str, previous: str | None) -> None:
    """Delete ``versions`` (never handed off) and point ``alias`` back at ``previous``."""
    import mlflow

    client = mlflow.MlflowClient()
    for version in versions:
        retry_locked(
            lambda version=version: client.delete_model_version(registered_name, version),
            f"withdrawing version {version} of {registered_name}",
        )
    if previous is not None and previous not in versions:
        set_alias(registered_name, alias, previous)


def tag_version(registered_name: str, version: str, tags: dict[str, str]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        retry_locked(
            lambda key=key, value=value: client.set_model_version_tag(
                registered_name, version, key, value
            ),
            f"tagging version {version} of {registered_name}",
        )


def version_tags(registered_name: str, version: str) -> dict[str, str]:
    import mlflow

    return dict(mlflow.MlflowClient().get_model_version(registered_name, version).tags)
