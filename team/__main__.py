"""``python -m team``: the team services of this project, and their members.

up                 start PostgreSQL, the S3 object store and mlflow server (those not
                   running), set up the roles, the pipeline's experiment and registered
                   model, point this clone's DVC remote at the store, print the server URI
down               stop them; their data stays in .team/
status             one line per service
env                print the server URI to export again
member add NAME --role reader|member|maintainer [--password-stdin]
member passwd NAME [--password-stdin]
member remove NAME
member list        the members and their roles (as the admin)
experiment add NAME   an experiment every member may log to (only the admin creates them)
model add NAME     a registered model every member may register versions of
routes             the server's routes that team/route_table.py does not classify (exit 1 if
                   any: after an MLflow upgrade, classify them)
backup DIR         the two databases and both buckets into DIR, with a manifest of checksums
restore DIR        a fresh stack filled from DIR
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from kernel.cli import run_command
from kernel.params import load_params
from team import members, mlflow_server, object_store, postgres, services
from team.settings import DVC_BUCKET, Settings, load, write_private

ROOT = Path(__file__).resolve().parent.parent


def exports(settings: Settings) -> str:
    """What a member exports to log to the team server, beside their own name and password."""
    return f"export MLFLOW_TRACKING_URI={shlex.quote(settings.tracking_uri)}"


def configure_dvc_remote(settings: Settings) -> None:
    """This clone's DVC remote ``team`` on the store, the default, in ``.dvc/config.local``
    (git-ignored, mode 600 from its first byte). Written here rather than by ``dvc remote
    modify``, whose command line any local user could read the secret key on."""
    from configobj import ConfigObj

    path = settings.root / ".dvc" / "config.local"
    config = ConfigObj(str(path) if path.exists() else None, encoding="utf-8")
    config.setdefault("core", {})["remote"] = "team"
    access, secret = settings.s3_keys("dvc")
    config['remote "team"'] = {
        "url": f"s3://{DVC_BUCKET}",
        "endpointurl": settings.s3_endpoint,
        "access_key_id": access,
        "secret_access_key": secret,
    }
    config.filename = None  # write() then returns the lines instead of writing the file
    staged = path.with_name(path.name + ".new")
    lines = [line.decode() if isinstance(line, bytes) else line for line in config.write()]
    write_private(staged, "\n".join(lines) + "\n")
    staged.replace(path)


def shared_experiments(settings: Settings) -> tuple[str, ...]:
    """Every experiment the project's code logs to: the pipeline's, the page's corrections',
    the request logs'."""
    params = load_params(settings.root / "params.yaml")
    names = (params.train.experiment_name, params.feedback.experiment_name)
    return (*names, params.monitor.experiment_name)


def prepare_server(settings: Settings) -> None:
    """The roles, and every shared experiment and the registered model made by the admin,
    so that no member manages (and may delete from, or deny others) what every member
    logs to."""
    client = members.admin_client(settings)
    members.ensure_roles(client)
    for name in shared_experiments(settings):
        members.add_experiment(client, name)
    params = load_params(settings.root / "params.yaml")
    members.add_registered_model(client, params.export.registered_model_name)


def up(settings: Settings) -> None:
    services.prepare_state(settings)
    if settings.external_postgres is None:
        postgres.start(settings)
        print(f"team: PostgreSQL on 127.0.0.1:{settings.postgres_port}", file=sys.stderr)
    if settings.external_s3 is None:
        object_store.start(settings)
    else:
        object_store.create_buckets(settings)
    print(f"team: S3 object store at {settings.s3_endpoint}", file=sys.stderr)
    mlflow_server.start(settings)
    prepare_server(settings)
    print(f"team: mlflow server at {settings.tracking_uri} (basic-auth)", file=sys.stderr)
    configure_dvc_remote(settings)
    print("team: DVC remote 'team' (default) on the object store", file=sys.stderr)
    print(
        "team: members log in with their own name: python -m team member add NAME --role member",
        file=sys.stderr,
    )
    print(exports(settings))


def down(settings: Settings) -> None:
    for name, stop in (
        ("mlflow server", mlflow_server.stop),
        ("S3 object store", object_store.stop),
        ("PostgreSQL", postgres.stop),
    ):
        print(f"team: {name} {'stopped' if stop(settings) else 'was not running'}", file=sys.stderr)


def status(settings: Settings) -> bool:
    states = {"mlflow server": services.running_pid(settings, "mlflow") is not None}
    if settings.external_postgres is None:
        states["PostgreSQL"] = postgres.running(settings)
    else:
        print("team: PostgreSQL: the team's own (TEAM_BACKEND_STORE_URI)")
    if settings.external_s3 is None:
        states["S3 object store"] = services.running_pid(settings, "s3") is not None
    else:
        print(f"team: S3 object store: the team's own, {settings.external_s3}")
    for name, running in states.items():
        print(f"team: {name}: {'running' if running else 'stopped'}")
    return all(states.values())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every command here
        print(f"team: error: {message} (python -m team --help)", file=sys.stderr)
        raise SystemExit(2)


def _check_routes(settings: Settings) -> int:
    from team import routes

    missing = routes.unclassified(mlflow_server.served_routes(settings))
    for method, path in missing:
        print(f"{method}\t{path}")
    print(
        f"team: {len(missing)} route(s) of the MLflow server not in team/route_table.py"
        + (": refused to all but the admin until classified" if missing else ""),
        file=sys.stderr,
    )
    return 1 if missing else 0


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m team", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in ("up", "down", "status", "env", "routes"):
        commands.add_parser(name)
    member = commands.add_parser("member").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    add = member.add_parser("add")
    add.add_argument("name")
    add.add_argument("--role", required=True)
    add.add_argument("--password-stdin", action="store_true")
    change = member.add_parser("passwd")
    change.add_argument("name")
    change.add_argument("--password-stdin", action="store_true")
    member.add_parser("remove").add_argument("name")
    member.add_parser("list")
    experiment = commands.add_parser("experiment").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    experiment.add_parser("add").add_argument("name")
    model = commands.add_parser("model").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    model.add_parser("add").add_argument("name")
    for name in ("backup", "restore"):
        commands.add_parser(name).add_argument("folder", type=Path)
    return parser


def run(args: argparse.Namespace) -> int:
    settings = load(ROOT, create=args.command == "up")
    if args.command == "up":
        up(settings)
    elif args.command == "down":
        down(settings)
    elif args.command == "status":
        return 0 if status(settings) else 3
    elif args.command == "env":
        print(exports(settings))
    elif args.command == "routes":
        return _check_routes(settings)
    elif args.command == "member":
        if args.action == "add":
            members.add(settings, args.name, args.role, args.password_stdin)
        elif args.action == "passwd":
            members.passwd(settings, args.name, args.password_stdin)
        elif args.action == "remove":
            members.remove(settings, args.name)
        else:
            members.listing(settings)
    elif args.command == "experiment":
        members.add_experiment(members.admin_client(settings), args.name, announce=True)
    elif args.command == "model":
        members.add_registered_model(members.admin_client(settings), args.name, announce=True)
    else:
        from team import backup

        if args.command == "backup":
            backup.backup(settings, args.folder)
        else:
            backup.restore(settings, args.folder)
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    # a service, the database, the store or dvc said no: every failure is one line
    return run_command("team", run, args, any_error=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
