"""The model registry: a version per exported ONNX model, and the alias that says which to use.

Registering a version and moving the alias are two steps on purpose: export moves
the alias only once the model's files are in place, and withdraws the version if
anything fails before that, so the registry never names a model that was not handed off.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np

from stages.tracking.runs import retry_locked


def register_onnx_model(
    model_bytes: bytes, example: np.ndarray, example_output: np.ndarray, registered_name: str
) -> str:
    """Log the ONNX model to the open run as a new version of ``registered_name``; its number.

    ``example`` and the model's ``example_output`` for it give the logged signature.
    """
    import mlflow
    import onnx
    from mlflow.models import infer_signature

    example = example.astype(np.float32)
    signature = infer_signature(example, example_output)
    info = mlflow.onnx.log_model(
        onnx.load_from_string(model_bytes),
        name="onnx_model",
        signature=signature,
        input_example=example,
        registered_model_name=registered_name,
        save_as_external_data=False,
        onnx_execution_providers=["CPUExecutionProvider"],
        pip_requirements=[
            f"onnxruntime=={importlib.metadata.version('onnxruntime')}",
            f"onnx=={importlib.metadata.version('onnx')}",
        ],
    )
    return str(info.registered_model_version)


def set_alias(registered_name: str, alias: str, version: str) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    retry_locked(
        lambda: client.set_registered_model_alias(registered_name, alias, version),
        "setting the registry alias",
    )


def withdraw_version(registered_name: str, version: str) -> None:
    """Delete a version that was registered but never handed off."""
    import mlflow

    client = mlflow.MlflowClient()
    retry_locked(
        lambda: client.delete_model_version(registered_name, version),
        f"withdrawing version {version} of {registered_name}",
    )
