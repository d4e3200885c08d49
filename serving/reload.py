"""``python -m serving reload``: switch a running ``make serve`` to the version its alias
names now, without a restart.

    python -m serving reload [--alias champion] [--port 8080]

Asks the server on ``127.0.0.1:<port>`` which version it serves; if ``@<alias>`` names
another one now, downloads it beside the served one (``.serve/<port>/<name>/model-v<N>``,
checked as ``python -m serving`` checks it), points the model's settings at it and sends the
server the one control request it takes (``serving.control``): MLServer loads the new
version while the old one answers, then switches in one step and unloads the old one
(``serving.mlserver_app.OneVersionRegistry``). The old folder is then removed. Every
failure is one line and leaves the server serving what it served, with its settings and
folder as they were.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kernel.cli import CommandError
from kernel.params import load_params
from kernel.signals import deferred_signals
from serving.control import CONTROL_HEADER, CONTROL_KEY_FILE, read_key
from serving.serve_folder import HOST, MODEL_SETTINGS, check_signature, write_settings_json
from tracking.registry import alias_target, download_version
from tracking.store import connect

# loading a version reads the model and builds its onnxruntime session: seconds
LOAD_TIMEOUT_SECONDS = 300.0


def reload(alias: str, port: int, serve_dir: Path) -> None:
    """Switch the server on ``port``, started from ``serve_dir``, to ``@alias``'s version."""
    name = load_params().export.registered_model_name
    folder = serve_dir / str(port)
    where = f"http://{HOST}:{port}"
    served_version(port, name)  # a server to switch, before the store is opened
    key = _key(folder, port)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    connect()
    with _one_reload_at_a_time(folder):
        served = served_version(port, name)
        settings_file = folder / name / MODEL_SETTINGS
        settings = _model_settings(settings_file, port)
        if not _alias_moved(name, alias, served, where):
            return
        old_folder = (settings_file.parent / settings["parameters"]["uri"]).resolve()
        with (
            tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as scratch,
            contextlib.ExitStack() as undo,  # what a failure takes back, newest first
        ):
            version, fetched = download_version(name, alias, Path(scratch) / "download")
            if version == served:  # the alias moved back meanwhile
                print(f"serving: {where} already serves {name} v{served} (@{alias}); nothing to do")
                return
            check_signature(fetched, f"{name} v{version} (@{alias})")
            new_folder = _place(fetched, settings_file.parent / f"model-v{version}", old_folder)
            undo.callback(shutil.rmtree, new_folder, True)
            switched = _switched_settings(settings, version, new_folder.name, alias)
            with deferred_signals():  # the settings file whole, old or new
                write_settings_json(settings_file, switched)
            undo.callback(write_settings_json, settings_file, settings)
            _load(port, name, key, f"{name} v{version} (@{alias})", served)
            now = served_version(port, name)
            if now != version:
                raise CommandError(
                    f"{where} answered the load of {name} v{version} but serves v{now}; see the "
                    "server's log"
                )
            undo.pop_all()  # the switch is done: keep the new folder and settings
        if old_folder.parent == settings_file.parent.resolve() and old_folder != new_folder:
            shutil.rmtree(old_folder, ignore_errors=True)
    print(f"serving: switched {name} from v{served} to v{version} (@{alias}) on {where}")


def _alias_moved(name: str, alias: str, served: str, where: str) -> bool:
    """Whether ``@alias`` names another version than the served one (said when not);
    ``CommandError`` when there is no such alias."""
    wanted = alias_target(name, alias)
    if wanted is None:
        raise CommandError(
            f"models:/{name}@{alias}: no such registered model or alias; {where} goes on "
            f"serving {name} v{served}"
        )
    if wanted == served:
        print(f"serving: {where} already serves {name} v{served} (@{alias}); nothing to do")
        return False
    return True


def served_version(port: int, name: str) -> str:
    """The version the server on ``port`` answers ``name`` with (its metadata's versions)."""
    status, body = _call(port, "GET", f"/v2/models/{name}")
    try:
        versions = json.loads(body).get("versions") if status == 200 else None
    except (ValueError, AttributeError):
        versions = None
    if not versions or len(versions) != 1:
        raise CommandError(
            f"http://{HOST}:{port} does not serve {name} as `make serve` does (GET "
            f"/v2/models/{name}: HTTP {status}); start it with `make serve SERVE_PORT={port}`"
        )
    return str(versions[0])


def _load(port: int, name: str, key: str, source: str, served: str) -> None:
    status, body = _call(
        port,
        "POST",
        f"/v2/repository/models/{name}/load",
        {CONTROL_HEADER: key},
        timeout=LOAD_TIMEOUT_SECONDS,
    )
    if status != 200:
        try:
            said = json.loads(body).get("error") or body.decode(errors="replace")
        except (ValueError, AttributeError):
            said = body.decode(errors="replace")
        lines = said.strip().splitlines() or ["no message"]
        raise CommandError(
            f"http://{HOST}:{port} refused to load {source} (HTTP {status}: {lines[0]}); it "
            f"goes on serving v{served}"
        )


def _call(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    """One request to the local server (Host 127.0.0.1:<port>, no Origin): status, body."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(
            method, path, body=b"" if method == "POST" else None, headers=headers or {}
        )
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as err:
        raise CommandError(
            f"no server answers on http://{HOST}:{port} ({type(err).__name__}: {err}); start "
            f"one with `make serve SERVE_PORT={port}`"
        ) from None
    finally:
        connection.close()


def _key(serve_dir: Path, port: int) -> str:
    try:
        return read_key(serve_dir)
    except OSError as err:
        raise CommandError(
            f"{serve_dir / CONTROL_KEY_FILE}: {err.strerror}; the server on port {port} was not "
            "started by `make serve` from this folder (or by another user): restart it here"
        ) from None


def _model_settings(path: Path, port: int) -> dict:
    try:
        settings = json.loads(path.read_text())
        if not isinstance(settings["parameters"]["uri"], str):
            raise TypeError("parameters.uri is no path")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CommandError(
            f"{path}: not the model settings `make serve` wrote ({type(err).__name__}: {err}); "
            f"restart the server on port {port}"
        ) from None
    return settings


def _place(fetched: Path, target: Path, served: Path) -> Path:
    """The downloaded model moved to ``target``, beside the served one."""
    if target.resolve() == served:
        raise CommandError(
            f"{target} holds the served model, which its settings name another version; "
            "restart the server"
        )
    fetched.chmod(0o755)  # a folder of mkdtemp's is private to its owner
    with deferred_signals():
        if target.exists():  # left by a reload cut short: never the served one
            target.rename(fetched.with_name("previous"))
        fetched.rename(target)
    return target.resolve()


def _switched_settings(settings: dict, version: str, folder: str, alias: str) -> dict:
    """The model's settings with the new version, its folder and the alias; the rest kept."""
    switched = json.loads(json.dumps(settings))
    switched["versions"] = [version]
    parameters = switched["parameters"]
    parameters["version"] = version
    parameters["uri"] = f"./{folder}"
    parameters["extra"] = {**(parameters.get("extra") or {}), "alias": alias}
    return switched


@contextlib.contextmanager
def _one_reload_at_a_time(serve_dir: Path) -> Iterator[None]:
    """Two reloads of one server take turns: the second finds the first's version served."""
    fd = os.open(serve_dir / ".reload.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
