"""``python -m tracking``: the MLflow UI, a registered ONNX model by alias, and a person's
moves of ``@champion`` with their history.

    python -m tracking [ui] [--port N]            # the UI on the project's store
    python -m tracking download ALIAS [DIR]       # e.g. champion: DIR/model.onnx
    python -m tracking promote VERSION --reason "why"   # move @champion, pin it
    python -m tracking rollback --reason "why"    # back to the previous champion, pinned
    python -m tracking unpin --reason "why"       # the champion rule decides again
    python -m tracking history [--last N]         # every move of @champion

All use the project's store (``MLFLOW_TRACKING_URI`` or ``mlflow.db``) and the registered
model name and aliases of params.yaml; on a team server the moves need the member role.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from kernel.cli import CommandError, OneLineArgumentParser, run_command
from kernel.params import load_params
from kernel.ports import port_taken
from tracking.registry import download_version
from tracking.store import artifact_location, connect, tracking_uri

UI_HOST = "127.0.0.1"


def serve_ui(port: str) -> int:
    """Run ``mlflow server`` on the project's store, on 127.0.0.1, until it stops or is
    interrupted; its address is printed once it answers, so the first click works.

    With ``MLFLOW_TRACKING_URI`` naming a server, that server's own UI is the one to open.
    """
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):  # a team server serves its own UI
        print(f"MLflow UI of the tracking server: {uri.rstrip('/')}/", file=sys.stderr)
        return 0
    if port_taken(UI_HOST, int(port)):
        raise CommandError(
            f"{UI_HOST}:{port} is taken by another program (a UI already running?); "
            "choose another with --port N (make ui MLFLOW_UI_PORT=N)"
        )
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", UI_HOST, "--port", port]  # fmt: skip
    location = artifact_location(uri)
    if location:
        command += ["--default-artifact-root", location]
    # mlflow server execs uvicorn by name: this environment's bin must come first
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    address = ui_address(uri, port)
    print(f"MLflow UI: starting on {uri} (a first start takes up to a minute)", file=sys.stderr)
    server = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    try:
        _wait_until_answering(f"http://{UI_HOST}:{port}/health", server)
        print(f"MLflow UI on {uri}: {address}", file=sys.stderr, flush=True)
        return server.wait()
    finally:
        if server.poll() is None:  # interrupted (Ctrl-C, SIGTERM): the server goes too
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


def _wait_until_answering(url: str, server: subprocess.Popen, limit: float = 300.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CommandError(
                f"mlflow server stopped with status {server.returncode} before answering; "
                "its lines above say why"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass  # not listening yet
        time.sleep(0.5)
    raise CommandError(f"mlflow server did not answer {url} within {limit:.0f} s")


def ui_address(uri: str, port: str) -> str:
    """The page of the experiment's training runs, in the UI's model-training mode.

    MLflow 3's UI opens in its GenAI mode by default, which hides the runs; the
    ``workflowType`` query switches it.
    """
    import mlflow

    base = f"http://127.0.0.1:{port}"
    name = load_params().train.experiment_name
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return f"{base}/#/?workflowType=machine_learning"
    experiment = mlflow.MlflowClient(uri).get_experiment_by_name(name)
    if experiment is None:
        return f"{base}/#/?workflowType=machine_learning"
    return f"{base}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"


def download(alias: str, folder: Path) -> tuple[str, str, Path]:
    """Copy the ONNX file of ``<registered model>@<alias>`` to ``folder/model.onnx``; return
    the registered name, the version and the file written."""
    name = load_params().export.registered_model_name
    # a progress bar per file of a 16-file download says nothing the closing line does not
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    connect()
    with tempfile.TemporaryDirectory() as scratch:
        version, fetched = download_version(name, alias, Path(scratch))
        found = sorted(fetched.rglob("*.onnx"))
        if not found:
            raise CommandError(f"models:/{name}@{alias}: holds no .onnx file")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "model.onnx"
        shutil.copyfile(found[0], target)
    return name, version, target


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is no port: expected a number from 1 to 65535")
    return int(text)


def _subcommand_parser(**kwargs) -> OneLineArgumentParser:  # noqa: ANN003 - argparse's
    return OneLineArgumentParser(name="tracking", **kwargs)


def argument_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m tracking",
        name="tracking",
        description="The MLflow UI, a registered model by alias, and @champion's moves.",
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_subcommand_parser
    )
    ui = commands.add_parser("ui", help="the MLflow UI on the project's store (the default)")
    ui.add_argument(
        "--port",
        type=_port,
        default=os.environ.get("MLFLOW_UI_PORT", "5000"),
        help="the UI's port on 127.0.0.1 (default: MLFLOW_UI_PORT or 5000)",
    )
    download_cmd = commands.add_parser("download", help="a registered ONNX model by alias")
    download_cmd.add_argument("alias", metavar="ALIAS")
    download_cmd.add_argument("folder", metavar="DIR", nargs="?", type=Path)
    promote = commands.add_parser("promote", help="move @champion to VERSION and pin it there")
    promote.add_argument("version", metavar="VERSION", type=lambda v: v.removeprefix("v"))
    for name, help_text in (
        ("rollback", "move @champion back to the version before its last move, and pin it"),
        ("unpin", "hand @champion back to the champion rule of the next exports"),
    ):
        commands.add_parser(name, help=help_text)
    for name in ("promote", "rollback", "unpin"):
        commands.choices[name].add_argument(
            "--reason", required=True, help="why, in words: kept in the history"
        )
    shown = commands.add_parser("history", help="every recorded move of @champion")
    shown.add_argument("--last", type=int, default=None, metavar="N", help="the last N only")
    return parser


def lifecycle(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from tracking import lifecycle
    from tracking.registry import MlflowRegistry
    from tracking.store import member_name

    params = load_params()
    name = params.export.registered_model_name
    aliases = lifecycle.Aliases(params.export.champion_alias, params.quantize.alias)
    connect()
    registry = MlflowRegistry(name)
    try:
        if args.command == "history":
            print("\n".join(lifecycle.history_lines(registry, aliases, args.last)))
            return 0
        if args.command == "promote":
            lines = lifecycle.move_champion(
                registry, name, aliases, args.version, args.reason, by=member_name()
            )
        elif args.command == "rollback":
            lines = lifecycle.rollback(registry, name, aliases, args.reason, by=member_name())
        else:
            lines = lifecycle.unpin(registry, aliases, args.reason, by=member_name())
    except MlflowException as err:  # a refusal by the server: a reader's move, say
        raise CommandError(f"MLflow: {err.message.splitlines()[0]}") from None
    lifecycle.print_lines(lines)
    return 0


def main(argv: list[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-") and args[0] not in ("-h", "--help"):
        args.insert(0, "ui")  # the UI is the default command, its options too
    parsed = argument_parser().parse_args(args)
    if parsed.command == "ui":
        return serve_ui(str(parsed.port))
    if parsed.command == "download":
        folder = parsed.folder or Path(parsed.alias)
        name, version, target = download(parsed.alias, folder)
        print(f"tracking: wrote {target}: {name} v{version} (@{parsed.alias})", file=sys.stderr)
        return 0
    return lifecycle(parsed)


if __name__ == "__main__":
    sys.exit(run_command("tracking", main))
