"""The team stack (PostgreSQL, SeaweedFS S3, mlflow server with basic-auth) of a project
copy, started by ``python -m team up`` on free loopback ports and stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from harness.network import free_port
from harness.workspace import GIT_IDENTITY, project_copy

VENV_BIN = Path(sys.executable).parent
PORT_VARIABLES = (
    "TEAM_POSTGRES_PORT",
    "TEAM_S3_PORT",
    "TEAM_MLFLOW_PORT",
    "TEAM_WEED_MASTER_PORT",
    "TEAM_WEED_VOLUME_PORT",
    "TEAM_WEED_FILER_PORT",
)


def _loopback_ports(count: int) -> list[int]:
    """Distinct free ports whose SeaweedFS gRPC twins (port + 10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port + 10000 >= 65536 or port in ports or port + 10000 in ports:
            continue
        with socket.socket() as twin:
            try:
                twin.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


# the members every stack starts with: two who log runs, one who only reads
MEMBERS = {"alice": "member", "bob": "member", "rita": "reader"}


def _exports(text: str) -> dict[str, str]:
    return {
        name: shlex.split(value)[0]
        for name, value in (
            line.removeprefix("export ").split("=", 1)
            for line in text.splitlines()
            if line.startswith("export ")
        )
    }


def add_member(
    repo: Path, env: dict[str, str], name: str, role: str, exports: dict[str, str]
) -> dict[str, str]:
    """``python -m team member add``; the member's exports, as the command printed them."""
    done = run([sys.executable, "-m", "team", "member", "add", name, "--role", role], repo, env)
    assert done.returncode == 0, done.stderr
    printed = _exports(done.stdout)
    assert printed["MLFLOW_TRACKING_URI"] == exports["MLFLOW_TRACKING_URI"]
    return printed


def add_shared(stack: dict, kind: str, name: str) -> None:
    """``python -m team experiment|model add``: only the admin creates them."""
    done = run([sys.executable, "-m", "team", kind, "add", name], stack["repo"], stack["env"])
    assert done.returncode == 0, done.stderr


def run(
    args: Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@contextlib.contextmanager
def team_stack(
    folders: Sequence[str] = ("team",),
    params: dict[str, dict] | None = None,
    experiments: Sequence[str] = (),
    models: Sequence[str] = (),
) -> Iterator[dict]:
    """A project copy with its stack up: ``repo``, ``env``, ``up``, ``exports``, ``root``.

    ``experiments`` and ``models`` are made by the admin beside the project's own (which
    ``team up`` makes), as a team's would be, for pipelines that log under other names."""
    # PostgreSQL runs as its own user: the project must be reachable for it, which pytest's
    # private temporary folders are not
    root = Path(tempfile.mkdtemp(prefix="team-"))
    root.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "TEAM_"))}
    env.update({"PATH": f"{VENV_BIN}{os.pathsep}{env['PATH']}", **GIT_IDENTITY})
    ports = _loopback_ports(len(PORT_VARIABLES))
    env.update({name: str(port) for name, port in zip(PORT_VARIABLES, ports, strict=True)})
    # a generated key may begin with "-" (token_urlsafe); every consumer must take it as a value
    env["TEAM_S3_ACCESS_KEY"] = "-begins-with-a-dash"
    repo = project_copy(root / "repo", env, folders=folders, params=params)
    try:
        up = run([sys.executable, "-m", "team", "up"], repo, env)
        assert up.returncode == 0, up.stderr
        exports = _exports(up.stdout)
        members = {
            name: add_member(repo, env, name, role, exports) for name, role in MEMBERS.items()
        }
        stack = {
            "repo": repo, "env": env, "up": up, "exports": exports, "root": root,
            "members": members,
        }  # fmt: skip
        for name in experiments:
            add_shared(stack, "experiment", name)
        for name in models:
            add_shared(stack, "model", name)
        yield stack
    finally:
        down = run([sys.executable, "-m", "team", "down"], repo, env)
        assert down.returncode == 0, down.stderr
        assert "running" not in run([sys.executable, "-m", "team", "status"], repo, env).stdout
        shutil.rmtree(root, ignore_errors=True)
