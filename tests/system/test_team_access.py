"""Who reaches the team stack: members with their own logins and roles, and nobody else.

A real stack (``python -m team up``) on loopback, probed as the attackers a shared machine
has: another local user (``nobody``), a page in a browser, a user with no role, a reader,
a member acting for another.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from factories.processes import error_lines
from factories.team_stack import settings_of, tiny_team_stack
from harness.team_stack import MEMBERS, add_member
from harness.team_stack import run as _run

OTHER_USER = "nobody"


@pytest.fixture(scope="module")
def team():
    with tiny_team_stack() as stack:
        yield stack


def _as_other_user(*command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", OTHER_USER, "--", *command],
        capture_output=True, text=True, timeout=timeout, check=False, cwd="/",
    )  # fmt: skip


def _request(
    url: str, user: str | None = None, password: str = "", method: str = "GET",
    body: dict | str | None = None, headers: dict | None = None,
) -> tuple[int, str]:  # fmt: skip
    headers = dict(headers or {})
    if user is not None:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {pair}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _member(team, name: str) -> tuple[str, str]:
    exports = team["members"][name]
    return exports["MLFLOW_TRACKING_USERNAME"], exports["MLFLOW_TRACKING_PASSWORD"]


def _admin(team) -> tuple[str, str]:
    return "admin", settings_of(team).secrets["MLFLOW_AUTH_ADMIN_PASSWORD"]


def _client_as(team, name: str):
    import mlflow

    user, password = _member(team, name)
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, password
    return mlflow.MlflowClient(team["exports"]["MLFLOW_TRACKING_URI"])


@pytest.fixture
def as_member():
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# --- the files and processes of the stack --------------------------------------------------


def test_another_local_user_reads_no_file_under_team(team):
    state = team["repo"] / ".team"
    files = [str(path) for path in state.rglob("*") if path.is_file() and not path.is_socket()]
    assert len(files) > 20, files  # settings, logs, keys, PostgreSQL's and the store's data
    probe = _as_other_user(
        "sh", "-c", 'for f in "$@"; do head -c1 "$f" >/dev/null 2>&1 && echo "$f"; done', "_",
        *files,
    )  # fmt: skip
    assert probe.stdout == "", f"readable by {OTHER_USER}: {probe.stdout}"
    listing = _as_other_user("ls", str(state))
    assert listing.returncode != 0, listing.stdout


def test_the_services_run_unprivileged_and_the_database_role_is_no_superuser(team):
    import psycopg

    repo = team["repo"]
    users = {}
    for name in ("s3", "mlflow"):
        leader = int((repo / ".team" / "run" / f"{name}.pid").read_text())
        shown = subprocess.run(
            ["ps", "-o", "user=", "-g", str(leader)], capture_output=True, text=True, check=True
        )
        users[name] = set(shown.stdout.split())
    assert users == {"s3": {"mnist-team"}, "mlflow": {"mnist-team"}}, users

    uri = settings_of(team).database_uri("mlflow").replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(uri) as connection:
        role = connection.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'mlflow'"
        ).fetchone()
        owner = connection.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'mlflow'"
        ).fetchone()
    assert role == (False, False, False)
    assert owner == ("mlflow",)


# --- the object store below its S3 gateway ------------------------------------------------------


@pytest.fixture(scope="module")
def stored_object(team):
    """An object in the DVC bucket, put through signed S3, and its bytes."""
    from team.object_store import s3_client

    client = s3_client(settings_of(team))
    key, payload = "files/md5/ab/cdef0123456789", os.urandom(4096)
    client.put_object(Bucket="dvc-remote", Key=key, Body=payload)
    return client, key, payload


def test_another_local_user_reaches_no_object_but_through_signed_s3(team, stored_object):
    client, key, payload = stored_object
    env = team["env"]
    ports = {n: env[f"TEAM_WEED_{n.upper()}_PORT"] for n in ("master", "volume", "filer")}
    filer = f"http://127.0.0.1:{ports['filer']}/buckets/dvc-remote/{key}"
    attempts = {
        "filer read": ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", filer],
        "filer write": ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
                        "--data-binary", "planted", filer],
        "filer multipart": ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            "-F", "file=@/etc/hostname", filer],
        "filer delete": ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE",
                         f"http://127.0.0.1:{ports['filer']}/buckets/dvc-remote/?recursive=true"],
        "master assign": ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                          f"http://127.0.0.1:{ports['master']}/dir/assign"],
        "volume read": ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        f"http://127.0.0.1:{ports['volume']}/1,0100000001"],
        "volume write": ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                         "-F", "file=@/etc/hostname",
                         f"http://127.0.0.1:{ports['volume']}/1,0100000001"],
        "s3 unsigned": ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        f"{settings_of(team).s3_endpoint}/dvc-remote/{key}"],
    }  # fmt: skip
    codes = {what: _as_other_user(*command).stdout for what, command in attempts.items()}
    assert all(code.isdigit() and int(code) >= 400 for code in codes.values()), codes

    weed = str(Path(sys.executable).parent / "weed")
    shell = subprocess.run(
        ["runuser", "-u", OTHER_USER, "--", "timeout", "20", weed, "shell",
         f"-master=127.0.0.1:{ports['master']}"],
        input="fs.ls /buckets\n", capture_output=True, text=True, check=False, cwd="/tmp",
    )  # fmt: skip
    assert "dvc-remote" not in shell.stdout + shell.stderr, shell.stdout[-2000:]
    assert client.get_object(Bucket="dvc-remote", Key=key)["Body"].read() == payload
    assert client.list_objects_v2(Bucket="dvc-remote", Prefix=key)["KeyCount"] == 1


class _AttackPage(BaseHTTPRequestHandler):
    """A page of another origin whose script tries every port of the store."""

    targets: list[str] = []

    def do_GET(self) -> None:
        script = f"""
        const targets = {json.dumps(self.targets)};
        window.results = (async () => {{
          const out = [];
          for (const url of targets) {{
            for (const method of ["GET", "PUT", "DELETE"]) {{
              try {{
                const r = await fetch(url, {{method, body: method === "PUT" ? "planted" : null}});
                out.push({{url, method, status: r.status, body: (await r.text()).slice(0, 80)}});
              }} catch (e) {{ out.push({{url, method, blocked: String(e)}}); }}
            }}
            const form = new FormData();
            form.append("file", new Blob(["planted"]), "x");
            try {{
              await fetch(url, {{method: "POST", mode: "no-cors", body: form}});
            }} catch (e) {{}}
          }}
          return out;
        }})();
        """
        page = f"<html><body><script>{script}</script></body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args) -> None:
        pass


def test_a_page_of_another_origin_reads_writes_and_deletes_nothing(team, stored_object):
    from harness.browser import chromium

    client, key, payload = stored_object
    env = team["env"]
    ports = {n: env[f"TEAM_WEED_{n.upper()}_PORT"] for n in ("master", "volume", "filer")}
    _AttackPage.targets = [
        f"{settings_of(team).s3_endpoint}/dvc-remote/{key}",
        f"http://127.0.0.1:{ports['filer']}/buckets/dvc-remote/{key}",
        f"http://127.0.0.1:{ports['volume']}/1,0100000001",
        f"http://127.0.0.1:{ports['master']}/dir/assign",
    ]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AttackPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with chromium() as browser:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            results = page.evaluate("window.results")
    finally:
        server.shutdown()
    read = [r for r in results if "status" in r and r["status"] < 400]
    assert not read, read
    assert len(results) == 12
    assert client.get_object(Bucket="dvc-remote", Key=key)["Body"].read() == payload


# --- MLflow: least privilege -------------------------------------------------------------------


def test_a_user_with_no_role_gets_403_on_everything_but_its_own_login(team):
    base = team["exports"]["MLFLOW_TRACKING_URI"]
    admin, admin_password = _admin(team)
    status, _ = _request(f"{base}/api/2.0/mlflow/users/create", admin, admin_password, "POST",
                         {"username": "norole", "password": "no-role-password-1"})  # fmt: skip
    assert status == 200
    me = ("norole", "no-role-password-1")
    assert _request(f"{base}/api/2.0/mlflow/users/current", *me)[0] == 200
    refused = {
        "search": _request(f"{base}/api/2.0/mlflow/experiments/search?max_results=5", *me),
        "create experiment": _request(f"{base}/api/2.0/mlflow/experiments/create", *me, "POST",
                                      {"name": "mine"}),
        "create model": _request(f"{base}/api/2.0/mlflow/registered-models/create", *me, "POST",
                                 {"name": "mine"}),
        "models": _request(f"{base}/api/2.0/mlflow/registered-models/search", *me),
        "users": _request(f"{base}/api/2.0/mlflow/users/list", *me),
    }  # fmt: skip
    assert {what: status for what, (status, _) in refused.items()} == dict.fromkeys(refused, 403)


def test_only_the_admin_creates_experiments_and_models(team):
    base = team["exports"]["MLFLOW_TRACKING_URI"]
    request = {"name": "planted", "artifact_location": "s3://dvc-remote/"}
    for who in ("alice", "rita"):
        for body in (request, {"name": "mine"}, json.dumps(request)):
            status, text = _request(
                f"{base}/api/2.0/mlflow/experiments/create", *_member(team, who), "POST", body
            )
            assert status == 403 and "only the admin" in text, (who, body, status, text)
        status, text = _request(
            f"{base}/api/2.0/mlflow/registered-models/create", *_member(team, who), "POST",
            {"name": "mine"},
        )  # fmt: skip
        assert status == 403 and "only the admin" in text, (who, status, text)
    status, text = _request(
        f"{base}/api/2.0/mlflow/experiments/search?max_results=50", *_admin(team)
    )
    names = {experiment["name"] for experiment in json.loads(text)["experiments"]}
    assert not names & {"planted", "mine"}, names
    # every experiment the code logs to was made by the admin at `make team-up`
    assert {"mnist", "feedback", "monitoring"} <= names, names


def test_the_assistant_is_off_and_a_token_gets_401_not_500(team):
    base = team["exports"]["MLFLOW_TRACKING_URI"]
    config = f"{base}/ajax-api/3.0/mlflow/assistant/config"
    for who in (_member(team, "alice"), _member(team, "rita"), _admin(team)):
        assert _request(config, *who, "PUT", {"full_access": True})[0] == 403, who[0]
        assert _request(config, *who)[0] == 403, who[0]
    status, body = _request(
        f"{base}/api/2.0/mlflow/experiments/search?max_results=1",
        headers={"Authorization": "Bearer not-a-token-we-accept"},
    )
    assert status == 401 and "basic credentials" in body


# --- members ------------------------------------------------------------------------------------


def test_members_are_listed_with_their_roles_and_bad_input_gets_one_line(team):
    repo, env = team["repo"], team["env"]
    team_command = [sys.executable, "-m", "team"]
    listed = _run([*team_command, "member", "list"], repo, env)
    assert listed.returncode == 0, listed.stderr
    rows = dict(line.split("\t") for line in listed.stdout.splitlines())
    assert rows == {"admin": "admin", "norole": "(no role)", **MEMBERS} or rows == {
        "admin": "admin", **MEMBERS,
    }  # fmt: skip
    cases = {
        "unknown role": (["member", "add", "zed", "--role", "boss"], "unknown role 'boss'"),
        "existing": (["member", "add", "alice", "--role", "member"], "exists already"),
        "bad name": (["member", "add", "../x", "--role", "member"], "is not valid"),
        "no such member": (["member", "remove", "ghost"], "no member 'ghost'"),
    }
    for what, (args, words) in cases.items():
        done = _run([*team_command, *args], repo, env)
        assert done.returncode == 1 and len(error_lines(done.stderr)) == 1, (what, done.stderr)
        assert words in done.stderr, (what, done.stderr)
    wrong = _run([*team_command, "member", "list"], repo,
                 {**env, "MLFLOW_AUTH_ADMIN_PASSWORD": "not-the-password"})  # fmt: skip
    assert wrong.returncode == 1 and "refused the admin's password (401)" in wrong.stderr


def test_no_member_is_told_the_admin_password(team):
    admin_password = _admin(team)[1]
    up = team["up"]
    assert admin_password not in up.stdout + up.stderr
    added = _run([sys.executable, "-m", "team", "member", "add", "newcomer", "--role", "reader"],
                 team["repo"], team["env"])  # fmt: skip
    assert added.returncode == 0 and admin_password not in added.stdout + added.stderr
    assert "MLFLOW_TRACKING_USERNAME=newcomer" in added.stdout
    env = _run([sys.executable, "-m", "team", "env"], team["repo"], team["env"])
    assert admin_password not in env.stdout and "admin" not in env.stdout


def test_a_removed_member_gets_401_at_once(team):
    base = team["exports"]["MLFLOW_TRACKING_URI"]
    exports = add_member(team["repo"], team["env"], "leaver", "member", team["exports"])
    me = (exports["MLFLOW_TRACKING_USERNAME"], exports["MLFLOW_TRACKING_PASSWORD"])
    search = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _request(search, *me)[0] == 200
    removed = _run([sys.executable, "-m", "team", "member", "remove", "leaver"],
                   team["repo"], team["env"])  # fmt: skip
    assert removed.returncode == 0, removed.stderr
    # whatever the server's credential cache holds
    assert {_request(search, *me)[0] for _ in range(6)} == {401}


def test_runs_name_their_member_and_nobody_deletes_another_members_run(team, as_member):
    from mlflow.exceptions import MlflowException

    alice = _client_as(team, "alice")
    experiment = alice.get_experiment_by_name("mnist").experiment_id
    run = alice.create_run(experiment, tags={"mlflow.user": "alice"})
    assert (run.info.user_id, run.data.tags["mlflow.user"]) == ("alice", "alice")
    with pytest.raises(MlflowException, match="another member"):
        alice.create_run(experiment, tags={"mlflow.user": "bob"})
    with pytest.raises(MlflowException, match="another member"):
        alice.set_tag(run.info.run_id, "mlflow.user", "bob")
    with pytest.raises(MlflowException, match="name its author"):
        alice.create_run(experiment)
    with pytest.raises(MlflowException, match="cannot be deleted"):
        alice.delete_tag(run.info.run_id, "mlflow.user")

    bob = _client_as(team, "bob")
    with pytest.raises(MlflowException, match="only its author writes"):
        bob.set_tag(run.info.run_id, "mlflow.user", "bob")  # his name, on her run
    with pytest.raises(MlflowException, match="only its author writes"):
        bob.delete_tag(run.info.run_id, "mlflow.user")
    assert bob.get_run(run.info.run_id).data.tags["mlflow.user"] == "alice"
    with pytest.raises(MlflowException) as refused:
        bob.delete_run(run.info.run_id)
    assert refused.value.error_code == "PERMISSION_DENIED"
    assert bob.get_run(run.info.run_id).info.lifecycle_stage == "active"

    team["members"]["mona"] = add_member(
        team["repo"], team["env"], "mona", "maintainer", team["exports"]
    )
    _client_as(team, "mona").delete_run(run.info.run_id)
    assert bob.get_run(run.info.run_id).info.lifecycle_stage == "deleted"


def test_a_reader_downloads_the_champion_but_logs_nothing(team, tmp_path, as_member):
    import mlflow

    alice = _client_as(team, "alice")
    experiment = alice.get_experiment_by_name("mnist").experiment_id
    run = alice.create_run(experiment, tags={"mlflow.user": "alice"})
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.onnx").write_bytes(b"onnx bytes of the test")
    alice.log_artifacts(run.info.run_id, str(model), "model")
    version = alice.create_model_version(
        "mnist-digits", f"{run.info.artifact_uri}/model", run.info.run_id,
        tags={"registered_by": "alice"},
    )  # fmt: skip
    alice.set_registered_model_alias("mnist-digits", "champion", version.version)
    with pytest.raises(mlflow.exceptions.MlflowException, match="another member"):
        alice.set_model_version_tag("mnist-digits", version.version, "promoted_by", "bob")

    reader = {**team["env"], **team["members"]["rita"], "PYTHONPATH": str(team["repo"])}
    got_dir = tmp_path / "got"
    done = _run([sys.executable, "-m", "tracking", "download", "champion", str(got_dir)],
                team["repo"], reader)  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = list(got_dir.rglob("model.onnx"))
    assert [path.read_bytes() for path in got] == [b"onnx bytes of the test"]


# --- a member against another member, a reader, a page on another port -----------------------


def _alice_run(team) -> str:
    base = team["exports"]["MLFLOW_TRACKING_URI"]
    experiment = json.loads(
        _request(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=mnist",
                 *_member(team, "alice"))[1]
    )["experiment"]["experiment_id"]  # fmt: skip
    status, text = _request(
        f"{base}/api/2.0/mlflow/runs/create", *_member(team, "alice"), "POST",
        {"experiment_id": experiment, "tags": [{"key": "mlflow.user", "value": "alice"}]},
    )  # fmt: skip
    assert status == 200, text
    return json.loads(text)["run"]["info"]["run_id"]


def _run_tags(team, run_id: str) -> dict[str, str]:
    base = team["exports"]["MLFLOW_TRACKING_URI"]
    status, text = _request(f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}", *_admin(team))
    assert status == 200, text
    return {tag["key"]: tag["value"] for tag in json.loads(text)["run"]["data"].get("tags", [])}


def test_a_member_forges_no_authorship_whichever_field_names_the_run(team):
    base = team["exports"]["MLFLOW_TRACKING_URI"]
    run = _alice_run(team)
    before = _run_tags(team, run)
    bob = _member(team, "bob")
    set_tag = f"{base}/api/2.0/mlflow/runs/set-tag"
    for body in (
        {"run_uuid": run, "key": "mlflow.user", "value": "carol"},
        {"run_id": run, "key": "mlflow.user", "value": "carol"},
        {"runUuid": run, "key": "mlflow.user", "value": "carol"},
        {"run_uuid": run, "key": "note", "value": "bob was here"},  # not his run at all
    ):
        status, text = _request(set_tag, *bob, "POST", body)
        assert status == 403, (body, status, text)
    # two spellings naming two runs, and a run that is not there: refused, never passed on
    own = _request(set_tag, *bob, "POST", {"run_id": "0" * 32, "key": "k", "value": "v"})
    assert own[0] == 404 and "RESOURCE_DOES_NOT_EXIST" in own[1], own
    split = _request(
        set_tag, *bob, "POST", {"run_id": "0" * 32, "run_uuid": run, "key": "k", "value": "v"}
    )
    assert split[0] == 400 and "more than one run" in split[1], split
    batch = _request(
        f"{base}/api/2.0/mlflow/runs/log-batch", *bob, "POST",
        {"run_uuid": run, "metrics": [{"key": "test/accuracy", "value": 0.01,
                                        "timestamp": 0, "step": 0}]},
    )  # fmt: skip
    assert batch[0] == 403, batch
    assert _run_tags(team, run) == before
    status, text = _request(f"{base}/api/2.0/mlflow/runs/get?run_id={run}", *_admin(team))
    assert "test/accuracy" not in text


def test_a_version_source_outside_the_servers_artifacts_is_refused(team, stored_object):
    from team.object_store import s3_client

    client, key, payload = stored_object
    base = team["exports"]["MLFLOW_TRACKING_URI"]
    create = f"{base}/api/2.0/mlflow/model-versions/create"
    for source in (
        "s3://dvc-remote/files",
        "file:///etc",
        "mlflow-artifacts:/../../dvc-remote/files",
        "runs:/" + "0" * 32 + "/model",
    ):
        status, text = _request(
            create, *_member(team, "bob"), "POST", {"name": "mnist-digits", "source": source}
        )
        assert status in (403, 404), (source, status, text)
    versions = _request(
        f"{base}/api/2.0/mlflow/model-versions/search?filter=name%3D%27mnist-digits%27",
        *_member(team, "rita"),
    )
    assert "dvc-remote" not in versions[1] and "file:///etc" not in versions[1], versions

    # the server's S3 keys open the artifacts bucket alone, DVC's the DVC bucket alone
    settings = settings_of(team)
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        s3_client(settings, "mlflow").get_object(Bucket="dvc-remote", Key=key)
    with pytest.raises(ClientError):
        s3_client(settings, "dvc").list_objects_v2(Bucket="mlflow-artifacts")
    with pytest.raises(ClientError):
        s3_client(settings, "dvc").put_object(Bucket="mlflow-artifacts", Key="x", Body=b"x")
    assert (
        s3_client(settings, "dvc").get_object(Bucket="dvc-remote", Key=key)["Body"].read()
        == payload
    )
    s3_client(settings, "mlflow").put_object(Bucket="mlflow-artifacts", Key="probe", Body=b"x")
    config = (team["repo"] / ".dvc" / "config.local").read_text()
    assert settings.s3_keys("dvc")[0] in config and settings.s3_keys("admin")[0] not in config


def test_no_member_manages_a_shared_experiment_or_denies_another(team):
    base = team["exports"]["MLFLOW_TRACKING_URI"]
    alice, bob = _member(team, "alice"), _member(team, "bob")
    found = _request(
        f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=feedback", *bob
    )
    assert found[0] == 200, found
    experiment = json.loads(found[1])["experiment"]["experiment_id"]
    status, text = _request(
        f"{base}/api/2.0/mlflow/runs/create", *bob, "POST",
        {"experiment_id": experiment, "tags": [{"key": "mlflow.user", "value": "bob"}]},
    )  # fmt: skip
    assert status == 200, text
    run = json.loads(text)["run"]["info"]["run_id"]
    attempts = {
        "create it first": _request(
            f"{base}/api/2.0/mlflow/experiments/create", *alice, "POST", {"name": "feedback"}
        ),
        "delete bob's run": _request(
            f"{base}/api/2.0/mlflow/runs/delete", *alice, "POST", {"run_id": run}
        ),
        "deny bob": _request(
            f"{base}/api/3.0/mlflow/users/permissions/grant", *alice, "POST",
            {"username": "bob", "resource_type": "experiment", "resource_pattern": experiment,
             "permission": "NO_PERMISSIONS"},
        ),
        "delete the experiment": _request(
            f"{base}/api/2.0/mlflow/experiments/delete", *alice, "POST",
            {"experiment_id": experiment},
        ),
    }  # fmt: skip
    # what exists already gets MLflow's own answer, and nothing is made or granted
    assert attempts.pop("create it first")[0] == 400
    assert {what: status for what, (status, _) in attempts.items()} == dict.fromkeys(attempts, 403)
    logged = _request(
        f"{base}/api/2.0/mlflow/runs/log-metric", *bob, "POST",
        {"run_id": run, "key": "still", "value": 1, "timestamp": 0},
    )  # fmt: skip
    assert logged[0] == 200, logged
    permissions = _request(f"{base}/api/3.0/mlflow/users/current/permissions", *alice)
    assert permissions[0] == 200 and "MANAGE" not in permissions[1], permissions


def test_the_server_answers_its_own_origin_alone(team):
    base = team["exports"]["MLFLOW_TRACKING_URI"]
    foreign = {"Origin": "http://127.0.0.1:9999"}
    for who, url, method in (
        (_member(team, "alice"), f"{base}/api/2.0/mlflow/experiments/search?max_results=1", "GET"),
        (_admin(team), f"{base}/api/2.0/mlflow/users/list", "GET"),
        (_admin(team), f"{base}/api/2.0/mlflow/users/list", "OPTIONS"),
    ):
        request = urllib.request.Request(
            url, method=method,
            headers={**foreign, "Access-Control-Request-Method": "GET",
                     "Authorization": "Basic " + base64.b64encode(":".join(who).encode()).decode()},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 403, (url, method)
        assert "Access-Control-Allow-Origin" not in refused.value.headers, refused.value.headers
    own = {"Origin": base}
    status, _ = _request(f"{base}/api/2.0/mlflow/users/list", *_admin(team), headers=own)
    assert status == 200


def test_a_reader_creates_no_mcp_server_and_no_route_is_unclassified(team):
    base = team["exports"]["MLFLOW_TRACKING_URI"]
    body = {"name": "planted", "description": "x"}
    for who in ("rita", "alice"):
        status, text = _request(
            f"{base}/api/3.0/mlflow/mcp-servers", *_member(team, who), "POST", body
        )
        assert status == 403, (who, status, text)
    listed = _request(f"{base}/api/3.0/mlflow/mcp-servers", *_admin(team))
    assert "planted" not in listed[1], listed
    # a route MLflow serves that the table does not name is a failure here, not a hole there
    routes = _run([sys.executable, "-m", "team", "routes"], team["repo"], team["env"])
    assert routes.returncode == 0 and routes.stdout == "", routes.stdout + routes.stderr
    assert "0 route(s)" in routes.stderr


# --- @champion's moves by people: members move it, a reader cannot, nobody forges history ----


def _tracking(team, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**team["env"], **team["members"][who], "PYTHONPATH": str(team["repo"])}
    return _run([sys.executable, "-m", "tracking", *args], team["repo"], env)


def _handed_off_version(client, run) -> str:
    return client.create_model_version(
        "mnist-digits", f"{run.info.artifact_uri}/model", run.info.run_id,
        tags={"registered_by": "alice", "precision": "fp32", "handed_off": "true"},
    ).version  # fmt: skip


def test_members_move_the_champion_with_a_history_a_reader_cannot_and_none_forges(
    team, tmp_path, as_member
):
    import mlflow

    alice = _client_as(team, "alice")
    experiment = alice.get_experiment_by_name("mnist").experiment_id
    run = alice.create_run(experiment, tags={"mlflow.user": "alice"})
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.onnx").write_bytes(b"onnx bytes")
    alice.log_artifacts(run.info.run_id, str(tmp_path / "model"), "model")
    first, second = _handed_off_version(alice, run), _handed_off_version(alice, run)

    for who, args in [
        ("alice", ("promote", first, "--reason", "the first one")),
        ("alice", ("promote", second, "--reason", "better on sevens")),
        ("bob", ("rollback", "--reason", "sevens were a fluke")),
    ]:
        done = _tracking(team, who, *args)
        assert done.returncode == 0, done.stderr
    assert alice.get_model_version_by_alias("mnist-digits", "champion").version == first
    before = alice.get_registered_model("mnist-digits").tags

    refused = _tracking(team, "rita", "promote", second, "--reason", "a reader tries")
    assert refused.returncode == 1
    (line,) = error_lines(refused.stderr)
    assert line.startswith("tracking: error: MLflow: ") and "rita" in line, line
    refused = _tracking(team, "rita", "unpin", "--reason", "a reader tries")
    assert refused.returncode == 1 and len(error_lines(refused.stderr)) == 1
    assert alice.get_registered_model("mnist-digits").tags == before
    assert alice.get_model_version_by_alias("mnist-digits", "champion").version == first

    shown = _tracking(team, "rita", "history")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    # the first move starts wherever an earlier test of the module left the alias
    assert [line.split()[1:5] for line in lines[-4:-1]][1:] == [
        ["promote", f"v{first}", "->", f"v{second}"],
        ["rollback", f"v{second}", "->", f"v{first}"],
    ]
    assert lines[-4].split()[1:5:3] == ["promote", f"v{first}"]
    assert lines[-2].endswith("by bob: sevens were a fluke")
    assert lines[-1] == f"@champion is v{first}, pinned to v{first} by bob (sevens were a fluke)"

    bob = _client_as(team, "bob")
    move_key = next(key for key in before if key.startswith("champion.move."))
    record = {"alias": "champion", "source": first, "to": second, "how": "promote",
              "reason": "forged", "at": "2026-01-01T00:00:00Z"}  # fmt: skip
    as_alice, as_bob = json.dumps({**record, "by": "alice"}), json.dumps({**record, "by": "bob"})
    model = "mnist-digits"
    for attempt, message in [
        (lambda: bob.set_registered_model_tag(model, "champion.move.2099", as_alice),
         "may not record a move of an alias as 'alice'"),
        (lambda: bob.set_registered_model_tag(model, "champion.pin", as_alice),
         "may not record a move of an alias as 'alice'"),
        (lambda: bob.set_registered_model_tag(model, move_key, as_bob), "no one rewrites it"),
        (lambda: bob.delete_registered_model_tag(model, move_key), "no one removes it"),
    ]:  # fmt: skip
        with pytest.raises(mlflow.exceptions.MlflowException, match=message):
            attempt()
    assert bob.get_registered_model("mnist-digits").tags == before
    done = _tracking(team, "bob", "unpin", "--reason", "the rule again")
    assert done.returncode == 0, done.stderr
    assert "champion.pin" not in bob.get_registered_model("mnist-digits").tags
