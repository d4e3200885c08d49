"""The model registry: a version per exported ONNX model, and the alias that says which to use.

Logging the model, registering a version and moving the alias are separate steps on
purpose: export moves the alias only once the model's files are in place, and if
anything fails before that it withdraws the version and puts the alias back where it
was, so the registry never names a model that was not handed off. (MLflow deletes an
alias together with the version it points to, hence the explicit restore.)
``MlflowRegistry`` gives one registered model's operations to the champion rule
(``tracking.champion``), which moves ``@champion`` and records why, as version tags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

import digits_predict
from digits_predict.contract import INPUT_NAME, OUTPUT_NAME
from tracking.store import retry_locked

# the file the onnx flavor writes into the logged model's folder
ONNX_FILE = "model.onnx"

if TYPE_CHECKING:
    from mlflow.models import Model, ModelSignature
    from mlflow.models.model import ModelInfo


def log_onnx_model(
    model_bytes: bytes,
    example: np.ndarray,
    example_output: np.ndarray,
    providers: Sequence[str],
    name: str = "onnx_model",
) -> ModelInfo:
    """Log the ONNX model to the open run (not yet registered), with its named signature.

    Both flavors read the same ``model.onnx``: ``onnx`` gives the graph, ``python_function``
    the checked Predictor of ``digits_predict.pyfunc`` (the package ships in the model's
    ``code/``), so MLflow's and MLServer's servers refuse inputs the Predictor refuses.
    """
    import mlflow
    import onnx
    import onnxruntime
    from mlflow.models import Model

    example = {INPUT_NAME: example.astype(np.float32)}
    return Model.log(
        artifact_path=None,
        name=name,
        flavor=_onnx_with_checked_pyfunc(),
        onnx_model=onnx.load_from_string(model_bytes),
        signature=model_signature(example[INPUT_NAME], example_output),
        input_example=example,
        code_paths=[str(Path(digits_predict.__file__).parent)],
        save_as_external_data=False,
        onnx_execution_providers=list(providers),
        pip_requirements=[
            f"onnxruntime=={onnxruntime.__version__}",
            f"onnx=={onnx.__version__}",
            f"numpy=={np.__version__}",
            f"mlflow=={mlflow.__version__}",
        ],
    )


def model_signature(example: np.ndarray, example_output: np.ndarray) -> ModelSignature:
    """``image`` float32 [-1, 28, 28] -> ``probabilities`` float32 [-1, 10], by name."""
    from mlflow.models import infer_signature

    return infer_signature(
        {INPUT_NAME: example.astype(np.float32)},
        {OUTPUT_NAME: np.asarray(example_output, dtype=np.float32)},
    )


def _onnx_with_checked_pyfunc() -> SimpleNamespace:
    """A flavor module for ``Model.log``: MLflow's ONNX flavor, pyfunc loader replaced."""
    import mlflow.onnx
    from mlflow.pyfunc import FLAVOR_NAME as PYFUNC

    def save_model(path: str, mlflow_model: Model, **kwargs: Any) -> None:
        mlflow.onnx.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
        mlflow_model.flavors[PYFUNC]["loader_module"] = "digits_predict.pyfunc"
        mlflow_model.save(str(Path(path) / "MLmodel"))

    return SimpleNamespace(__name__="mlflow.onnx", save_model=save_model)


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


def versions_from_run(registered_name: str, run_id: str, precision: str) -> list[str]:
    """The versions of ``registered_name`` logged in run ``run_id`` with that ``precision``
    tag, oldest first (a version without the tag is an fp32 one)."""
    import mlflow

    client = mlflow.MlflowClient()
    found = retry_locked(
        lambda: client.search_model_versions(f"name = '{registered_name}' and run_id = '{run_id}'"),
        "listing the run's model versions",
    )
    return sorted(
        (str(v.version) for v in found if v.tags.get("precision", "fp32") == precision), key=int
    )


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


def all_version_tags(registered_name: str) -> dict[str, dict[str, str]]:
    """Every version of the registered model with its tags, in one search."""
    import mlflow

    client = mlflow.MlflowClient()
    found = retry_locked(
        lambda: client.search_model_versions(f"name = '{registered_name}'"),
        f"reading the versions of {registered_name}",
    )
    return {str(v.version): dict(v.tags) for v in found}


def set_alias(registered_name: str, alias: str, version: str) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    retry_locked(
        lambda: client.set_registered_model_alias(registered_name, alias, version),
        "setting the registry alias",
        upsert=True,
    )


def delete_alias(registered_name: str, alias: str) -> None:
    """Remove ``alias`` (nothing to do when it is not there)."""
    import mlflow

    client = mlflow.MlflowClient()
    if alias_target(registered_name, alias) is not None:
        retry_locked(
            lambda: client.delete_registered_model_alias(registered_name, alias),
            f"removing the registry alias @{alias}",
        )


def model_tags(registered_name: str) -> dict[str, str]:
    """The registered model's own tags; none when the model does not exist yet."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()

    def read() -> dict[str, str]:
        try:
            return dict(client.get_registered_model(registered_name).tags)
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise

    return retry_locked(read, f"reading the tags of {registered_name}")


def set_model_tag(registered_name: str, key: str, value: str) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    retry_locked(
        lambda: client.set_registered_model_tag(registered_name, key, value),
        f"tagging {registered_name}",
        upsert=True,
    )


def delete_model_tag(registered_name: str, key: str) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    retry_locked(
        lambda: client.delete_registered_model_tag(registered_name, key),
        f"removing tag {key} of {registered_name}",
    )


def withdraw(registered_name: str, versions: list[str], alias: str, previous: str | None) -> None:
    """Point ``alias`` back at ``previous``, then delete ``versions`` (never handed off).

    In that order: MLflow deletes an alias with the version it names, so a failure between
    the two steps leaves the alias at ``previous`` rather than gone.
    """
    import mlflow

    client = mlflow.MlflowClient()
    if previous is not None and previous not in versions:
        retry_locked(
            lambda: client.set_registered_model_alias(registered_name, alias, previous),
            "restoring the registry alias",
            upsert=True,
        )
    for version in versions:
        retry_locked(
            lambda version=version: client.delete_model_version(registered_name, version),
            f"withdrawing version {version} of {registered_name}",
        )


def tag_version(registered_name: str, version: str, tags: Mapping[str, str]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        retry_locked(
            lambda key=key, value=value: client.set_model_version_tag(
                registered_name, version, key, value
            ),
            f"tagging version {version} of {registered_name}",
            upsert=True,  # two machines may tag the champion with its drawn accuracy at once
        )


def version_tags(registered_name: str, version: str) -> dict[str, str]:
    import mlflow

    return dict(mlflow.MlflowClient().get_model_version(registered_name, version).tags)


def version_onnx_bytes(registered_name: str, version: str) -> bytes:
    """The ONNX file of version ``version`` of ``registered_name``, read from the registry.

    A version that cannot be downloaded or holds no ``.onnx`` file raises ``CommandError``.
    """
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    from kernel.cli import CommandError

    uri = f"models:/{registered_name}/{version}"
    with tempfile.TemporaryDirectory() as scratch:
        try:
            fetched = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{uri}/{ONNX_FILE}", dst_path=scratch
            )
        except MlflowException as err:
            raise CommandError(f"{uri}: {err.message.splitlines()[0]}") from None
        found = Path(fetched)
        if not found.is_file():
            raise CommandError(f"{uri}: holds no {ONNX_FILE}")
        return found.read_bytes()


def download_version(registered_name: str, alias: str, destination: Path) -> tuple[str, Path]:
    """Download ``<registered_name>@<alias>`` (the whole MLflow model) into ``destination``.

    Returns the version the alias pointed at and the model's folder. An unknown model or
    alias raises ``CommandError`` with MLflow's first line.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from kernel.cli import CommandError

    uri = f"models:/{registered_name}@{alias}"
    version = alias_target(registered_name, alias)
    if version is None:
        raise CommandError(f"{uri}: no such registered model or alias; run `make repro` first")
    destination.mkdir(parents=True, exist_ok=True)
    try:
        fetched = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{registered_name}/{version}", dst_path=str(destination)
        )
    except MlflowException as err:
        raise CommandError(f"{uri}: {err.message.splitlines()[0]}") from None
    return version, Path(fetched)


@dataclass(frozen=True)
class MlflowRegistry:
    """One registered model of the MLflow store, as the champion rule reads and writes it
    (``tracking.champion.ModelRegistry``). Each call goes through this module's functions,
    which wait out a locked store."""

    name: str

    def alias_target(self, alias: str) -> str | None:
        return alias_target(self.name, alias)

    def set_alias(self, alias: str, version: str) -> None:
        set_alias(self.name, alias, version)

    def version_tags(self, version: str) -> dict[str, str]:
        return version_tags(self.name, version)

    def all_version_tags(self) -> dict[str, dict[str, str]]:
        return all_version_tags(self.name)

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        tag_version(self.name, version, tags)

    def version_onnx_bytes(self, version: str) -> bytes:
        return version_onnx_bytes(self.name, version)

    def delete_alias(self, alias: str) -> None:
        delete_alias(self.name, alias)

    def model_tags(self) -> dict[str, str]:
        return model_tags(self.name)

    def set_model_tag(self, key: str, value: str) -> None:
        set_model_tag(self.name, key, value)

    def delete_model_tag(self, key: str) -> None:
        delete_model_tag(self.name, key)
