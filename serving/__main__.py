"""``python -m serving``: serve a registered version of the model on 127.0.0.1.

    python -m serving [--alias champion] [--port 8080] [--server mlserver|mlflow]
    python -m serving reload [--alias champion] [--port 8080]

Downloads ``models:/<registered model>@<alias>`` from the project's store into
``.serve/<port>/`` and replaces this process with the server:

- ``mlserver`` (default): MLServer from ``.venv-serve`` with ``serving.runtime``, speaking
  the Open Inference Protocol (``/v2/health/ready``, ``/v2/models/<name>``,
  ``/v2/models/<name>/infer``); its gRPC twin listens on the next port. It starts through
  ``serving.mlserver_app``, which caps request bodies, checks the Host and closes the
  model-repository API to all but this folder's owner (see ``serving.guard``): the key in
  ``.serve/<port>/control.key`` lets ``reload`` (``serving.reload``) switch the running
  server to the version the alias names now, without a restart. Every answered image is
  appended to the request log in ``monitor.log_dir`` (``monitor.request_log``;
  ``--no-request-log`` turns it off).
- ``mlflow``: ``mlflow models serve`` from this environment (``/invocations``), with this
  environment's ``bin`` on PATH, where MLflow looks for ``uvicorn``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from digits_predict.contract import INPUT_NAME, OUTPUT_NAME
from kernel.cli import CommandError, run_command
from kernel.params import MonitorParams, load_params
from kernel.ports import port_taken
from kernel.signals import deferred_signals
from monitor.shipping import is_team_store
from serving.control import write_key
from tracking.registry import download_version
from tracking.store import connect

HOST = "127.0.0.1"
SERVE_DIR = Path(".serve")
MLSERVER = Path(".venv-serve/bin/mlserver")
# 1024 FP32 images take 3.2 MB in a protobuf message; 4 MiB is gRPC's own default for what
# it receives, written here so the limit is stated, and it now bounds what it sends too
GRPC_MAX_MESSAGE_BYTES = 4 * 2**20


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["reload"]:
        from serving.reload import reload

        reload(argv[1:])
        return
    args = _parser().parse_args(argv)
    _refuse_taken(args.port, "HTTP")
    if args.server == "mlserver":
        _refuse_taken(args.port + 1, f"gRPC (MLServer takes the port after --port {args.port})")
    if args.server == "mlserver" and not args.mlserver.is_file():
        raise CommandError(f"{args.mlserver} does not exist; run `make serve-setup` first")
    params = load_params()
    name = params.export.registered_model_name
    # a progress bar per file of a 16-file download says nothing the closing line does not
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = connect()
    # one folder per port: two servers (say @champion and @candidate) never share files
    serve_dir = args.serve_dir / str(args.port)
    version, model_dir = fetch(name, args.alias, serve_dir)
    # versions a reload brought in while an earlier server ran here (the port was free)
    for stale in (serve_dir / name).glob(f"{model_dir.name}-v*"):
        shutil.rmtree(stale, ignore_errors=True)
    source = f"{name} v{version} (@{args.alias})"
    if args.server == "mlserver":
        request_log = None if args.no_request_log else request_log_settings(params.monitor, uri)
        write_mlserver_settings(serve_dir, name, version, args.port, args.alias, request_log)
        write_key(serve_dir)  # what `python -m serving reload` shows the server
        print(
            f"serving: {source} over the Open Inference Protocol on http://{HOST}:{args.port}/v2/"
            f"models/{name} (gRPC {HOST}:{args.port + 1})",
            file=sys.stderr,
            flush=True,
        )
        # `mlserver start` with our request checks, run by the serve venv's own python
        python = args.mlserver.parent / "python"
        command = [str(python), "-m", "serving.mlserver_app", str(serve_dir)]
        os.execve(command[0], command, os.environ)
    print(
        f"serving: {source} with mlflow models serve on http://{HOST}:{args.port}/invocations",
        file=sys.stderr,
        flush=True,
    )
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model_dir),
               "--env-manager", "local", "--host", HOST, "--port", str(args.port)]  # fmt: skip
    os.execve(sys.executable, command, env)


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


def request_log_settings(monitor: MonitorParams, uri: str) -> dict[str, object]:
    """Where and how the runtime logs answers (an absolute folder: MLServer's cwd may differ),
    and, with a team server for the store, where it copies the log (``monitor.shipping``)."""
    return {
        "folder": str(Path(monitor.log_dir).resolve()),
        "keep_pixels": monitor.keep_pixels,
        "rotate_bytes": monitor.rotate_mb * 2**20,
        "keep_days": monitor.keep_days,
        "ship": {"tracking_uri": uri, "experiment": monitor.experiment_name}
        if is_team_store(uri)
        else None,
    }


def write_mlserver_settings(
    serve_dir: Path,
    name: str,
    version: str,
    port: int,
    alias: str | None = None,
    request_log: dict[str, object] | None = None,
) -> None:
    """MLServer's server and model settings: loopback only, no metrics server, our runtime.

    Its request-body cap and the other checks are ``serving.guard``'s: no setting has them.
    The alias served and the request log's settings ride in the model's ``extra`` parameters.
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
            "extra": {"alias": alias, "request_log": request_log},
        },
    }
    _write_json(serve_dir / "settings.json", server)
    _write_json(serve_dir / name / "model-settings.json", model)


def _write_json(path: Path, value: dict) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    partial.replace(path)


def _refuse_taken(port: int, role: str) -> None:
    if port_taken(HOST, port):
        raise CommandError(
            f"{HOST}:{port}, for {role}, is taken by another program (a server already "
            "running?); choose another port with --port (make serve SERVE_PORT=...)"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description=__doc__.splitlines()[0],
        epilog="python -m serving reload --help: switch a running server to the version the "
        "alias names now, without a restart",
    )
    parser.add_argument("--alias", default="champion", help="registry alias (default: champion)")
    parser.add_argument("--port", type=_port, default=8080, help="HTTP port (default: 8080)")
    parser.add_argument("--server", choices=("mlserver", "mlflow"), default="mlserver")
    parser.add_argument(
        "--no-request-log", action="store_true", help="do not log answers (monitor.log_dir)"
    )
    parser.add_argument("--serve-dir", type=Path, default=SERVE_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--mlserver", type=Path, default=MLSERVER, help=argparse.SUPPRESS)
    return parser


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1024 <= port <= 65534:
        raise argparse.ArgumentTypeError(f"{text!r} is no port; expected 1024..65534")
    return port


if __name__ == "__main__":
    sys.exit(run_command("serving", main))
