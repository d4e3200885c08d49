"""The serve folder, ``.serve/<port>/``: what ``python -m serving`` puts there for MLServer,
and what ``python -m serving reload`` rewrites.

    .serve/<port>/settings.json                 MLServer's server settings (loopback only)
    .serve/<port>/control.key                   the reload's key (``serving.control``)
    .serve/<port>/<name>/model-settings.json    the model's settings: version, folder, extras
    .serve/<port>/<name>/model[-v<N>]/          the registered version, downloaded whole

A version is downloaded beside the served one and checked before it takes its place; the
settings files are replaced whole, never left half-written.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from digits_predict.contract import INPUT_NAME, OUTPUT_NAME
from kernel.cli import CommandError
from kernel.signals import deferred_signals
from tracking.registry import download_version

if TYPE_CHECKING:
    from monitor.log_settings import RequestLogSettings

HOST = "127.0.0.1"
MODEL_SETTINGS = "model-settings.json"
# 1024 FP32 images take 3.2 MB in a protobuf message; 4 MiB is gRPC's own default for what
# it receives, written here so the limit is stated, and it now bounds what it sends too
GRPC_MAX_MESSAGE_BYTES = 4 * 2**20


def fetch(name: str, alias: str, serve_dir: Path) -> tuple[str, Path]:
    """Download the alias's version to ``serve_dir/<name>/model``, replacing the old one whole.

    A failed download, or a version without the served contract, leaves the previous model.
    """
    serve_dir.mkdir(parents=True, exist_ok=True)
    target = serve_dir / name / "model"
    with tempfile.TemporaryDirectory(dir=serve_dir, prefix=".download-") as scratch:
        version, fetched = download_version(name, alias, Path(scratch) / "download")
        check_signature(fetched, f"{name} v{version} (@{alias})")
        fetched.chmod(0o755)  # a folder of mkdtemp's is private to its owner
        target.parent.mkdir(parents=True, exist_ok=True)
        with deferred_signals():  # the old model leaves with the scratch folder, never half
            if target.exists():
                target.rename(Path(scratch) / "previous")
            fetched.rename(target)
    return version, target


def check_signature(model_dir: Path, source: str) -> None:
    """Refuse a version logged before the model had its named, checked pyfunc.

    Such a version's signature is an unnamed tensor (a server would call it ``input-0``)
    and its pyfunc answers inputs divided by 255 with garbage instead of refusing them.
    """
    from mlflow.models import Model

    model = Model.load(str(model_dir))
    signature = model.signature
    names = (signature.inputs.input_names(), signature.outputs.input_names()) if signature else None
    loader = model.flavors.get("python_function", {}).get("loader_module")
    if names != ([INPUT_NAME], [OUTPUT_NAME]) or loader != "digits_predict.pyfunc":
        raise CommandError(
            f"{source} was registered before the served contract (signature {INPUT_NAME} -> "
            f"{OUTPUT_NAME}, inputs checked by digits_predict.pyfunc); export a new version "
            "(`dvc repro -f export`) and serve it (ALIAS=candidate)"
        )


def write_mlserver_settings(
    serve_dir: Path,
    name: str,
    version: str,
    port: int,
    alias: str | None = None,
    request_log: RequestLogSettings | None = None,
) -> None:
    """MLServer's server and model settings: loopback only, no metrics server, our runtime.

    Its request-body cap and the other checks are ``serving.guard``'s: no setting has them.
    The alias served and the request log's settings (``RequestLogSettings.as_extra``, read
    back by ``serving.runtime``) ride in the model's ``extra`` parameters.
    """
    server = {
        "host": HOST,
        "http_port": port,
        "grpc_port": port + 1,
        "grpc_max_message_length": GRPC_MAX_MESSAGE_BYTES,
        "metrics_endpoint": None,
        "debug": False,
        # inference in the server process: a worker pool only adds a hop for a model this small
        "parallel_workers": 0,
        # an answer is ten probabilities: compressing it costs more than the bytes it saves
        "gzip_enabled": False,
    }
    model = {
        "name": name,
        # the registry's version and MLflow's pyfunc, as the protocol's model metadata says
        "versions": [version],
        "platform": "mlflow",
        "implementation": "serving.runtime.DigitsRuntime",
        "parameters": {
            "uri": "./model",
            "version": version,
            "extra": {
                "alias": alias,
                "request_log": request_log.as_extra() if request_log is not None else None,
            },
        },
    }
    write_settings_json(serve_dir / "settings.json", server)
    write_settings_json(serve_dir / name / MODEL_SETTINGS, model)


def write_settings_json(path: Path, value: dict) -> None:
    """Replace a settings file whole: MLServer reads the old one or the new one."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    partial.replace(path)
