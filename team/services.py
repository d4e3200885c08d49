"""The team services' processes: started detached under an unprivileged user, found again
by pid file, stopped by signal; and the private folders they keep their data in.

Each one logs to ``.team/logs/<name>.log`` and says it is up only once it answers:
PostgreSQL to ``pg_ctl -w``, the object store to an HTTP request, MLflow to ``/health``.

Started by root, SeaweedFS and the MLflow server run as the system user ``SERVICE_USER``
(PostgreSQL as ``postgres``), never as root; started by anyone else, as that user. Either
way every file they write is owner-only (umask 077) and ``.team/`` lists nothing to
other local users.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from kernel.cli import CommandError
from kernel.ports import port_taken
from team.settings import HOST, Settings, write_private

SERVICE_USER = "mnist-team"
# what the command line of each service's process holds, to know a pid file still names it
MARKERS = {"s3": b"server", "mlflow": b"mlflow"}
PRIVATE = 0o077


class ServiceError(CommandError):
    """A service would not start or stop: one line, with the log to read."""


# --- who runs the services, and the folders they own -------------------------------------------


def as_root() -> bool:
    return os.geteuid() == 0


def service_account() -> pwd.struct_passwd:
    """The unprivileged user the services run as: made once (a system user, no login)."""
    if not as_root():
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        done = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0 and "already exists" not in done.stderr:
            raise ServiceError(
                f"cannot create the service user {SERVICE_USER}: {done.stderr.strip()}"
            ) from None
        return pwd.getpwnam(SERVICE_USER)


def private_dir(path: Path, owner: str | None = None, traversable: bool = False) -> Path:
    """A folder only ``owner`` (default: this user) can read; ``traversable`` lets the
    services pass through it to their own folders without listing it."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o711 if traversable else 0o700)
    if owner is not None and as_root():
        shutil.chown(path, owner, owner)
    return path


def own_tree(path: Path, owner: str) -> None:
    """Give ``owner`` a folder and all in it, owner-only (data from before this layout too).

    Walked by file descriptor, never following a symbolic link: the tree belongs to the
    service user, who could swap a folder for a link to ``/etc`` while root walks it.
    """
    if not as_root():
        return
    account = pwd.getpwnam(owner)

    def fix(name: str, dir_fd: int | None) -> None:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:  # a link (ELOOP), a socket (ENXIO): the entry itself, never its target
            os.chown(name, account.pw_uid, account.pw_gid, dir_fd=dir_fd, follow_symlinks=False)
            return
        try:
            info = os.fstat(fd)
            os.fchown(fd, account.pw_uid, account.pw_gid)
            directory = stat.S_ISDIR(info.st_mode)
            os.fchmod(fd, 0o700 if directory or info.st_mode & 0o111 else 0o600)
        finally:
            os.close(fd)

    if not path.is_dir() or path.is_symlink():
        fix(str(path), None)
        return
    fix(str(path), None)
    for _, dirs, files, dir_fd in os.fwalk(path, follow_symlinks=False):
        for name in (*dirs, *files):
            fix(name, dir_fd)


def service_dir(settings: Settings) -> Path:
    """The services' own folder: their configuration, keys and working directory."""
    return private_dir(settings.state / "service", owner=service_account().pw_name)


def prepare_state(settings: Settings) -> None:
    """``.team/`` traversable only; its logs, pid files and settings private to this user."""
    private_dir(settings.state, traversable=True)
    # each log is owner-only; PostgreSQL writes its own, so its user must pass through
    private_dir(settings.state / "logs", traversable=True)
    # PostgreSQL's socket folder is under run/: its user must pass through
    private_dir(settings.state / "run", traversable=True)
    settings_file = settings.state / "settings.env"
    if settings_file.exists():
        settings_file.chmod(0o600)


def check_reachable_by_services(paths: list[Path]) -> None:
    """The service user must reach the interpreter and the project it runs from."""
    if not as_root():
        return
    for path in paths:
        done = subprocess.run(
            ["runuser", "-u", SERVICE_USER, "--", "test", "-r", str(path)], check=False
        )
        if done.returncode != 0:
            raise ServiceError(
                f"the service user {SERVICE_USER} cannot reach {path}: make the folders above "
                "it traversable (chmod o+x), or keep the project and .venv elsewhere"
            )


# --- processes ---------------------------------------------------------------------------------


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.state / "run" / f"{name}.pid"


def running_pid(settings: Settings, name: str) -> int | None:
    """The pid of the service if it is alive and is ours, else None.

    A pid file can outlive its process (a reboot, a kill -9) and the number be reused by
    another program: the process must still lead its own group and run our command.
    """
    path = _pid_file(settings, name)
    try:
        pid = int(path.read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if os.getpgid(pid) != pid or MARKERS[name] not in command:
            return None
    except (OSError, ValueError, IndexError):
        return None
    return pid


def _start(
    settings: Settings, name: str, command: list[str], env: dict[str, str], port: int, cwd: Path
) -> subprocess.Popen:
    _port_free(port, name)
    log = settings.state / "logs" / f"{name}.log"
    account = service_account()
    identity = (
        {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []} if as_root() else {}
    )
    # the log is opened here, owner-only: the service writes to it without being able to
    # reopen it, and nobody else reads it
    with os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as sink:
        log.chmod(0o600)  # a log from before this layout was world-readable
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            env={**_base_environment(), "HOME": str(cwd), **env},
            cwd=cwd,
            umask=PRIVATE,
            start_new_session=True,  # its own process group: stopped whole, outlives `up`
            **identity,
        )
    write_private(_pid_file(settings, name), f"{process.pid}\n")
    return process


def _base_environment() -> dict[str, str]:
    """What a service inherits of ours: the path and locale, not the caller's secrets."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
    return {name: os.environ[name] for name in keep if name in os.environ}


def _port_free(port: int, name: str) -> None:
    """Refuse to start where another program already listens: it would answer for us."""
    if port_taken(HOST, port):
        raise ServiceError(
            f"{HOST}:{port} is taken by another program; {name} cannot start there "
            "(choose another port with the TEAM_*_PORT variables before the first up)"
        )


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except OSError:
        return False
    return True


def stop(settings: Settings, name: str, timeout: float = 30.0) -> bool:
    """Stop the service's whole process group (its workers too); False if it was not running."""
    pid = running_pid(settings, name)
    if pid is None:
        _pid_file(settings, name).unlink(missing_ok=True)
        return False
    _stop_group(pid, timeout)
    _pid_file(settings, name).unlink(missing_ok=True)
    return True


def _stop_group(pid: int, timeout: float = 30.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.2)
    if _group_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def start_and_wait(
    settings: Settings, name: str, command: list[str], env: dict[str, str], port: int, url: str
) -> None:
    """Start the service in its own folder as the service user, and wait until it answers;
    if it never does, stop it again."""
    process = _start(settings, name, command, env, port, service_dir(settings))
    log = settings.state / "logs" / f"{name}.log"
    try:
        wait_http(url, lambda: process.poll() is None, name, log)
    except BaseException:
        _stop_group(process.pid, timeout=10)
        _pid_file(settings, name).unlink(missing_ok=True)
        raise


def wait_http(
    url: str, alive: Callable[[], bool], what: str, log: Path, timeout: float = 90.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise ServiceError(f"{what} exited while starting: see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError as err:
            if err.code == 403:
                return  # the object store answers; refusing an anonymous request is its job
            time.sleep(0.5)
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise ServiceError(f"{what} did not answer {url} within {timeout:.0f} s: see {log}")
