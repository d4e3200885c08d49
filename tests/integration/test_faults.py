"""The fault matrix: network drops, corrupt files, a tracking store that is down or locked.

Each test shows one behaviour a user relies on when something goes wrong: one clear
error, nothing half-written, and a clean rerun once the cause is gone.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from factories.data import damage_npz, npz_bytes, sha256
from factories.processes import stage_args
from harness.network import free_port
from kernel.atomic import write_npz
from kernel.cli import CommandError
from stages import fetch, preprocess
from stages.dataset import sources
from tracking.store import check_reachable, retry_locked


def _fetch(params: Path, out: Path) -> None:
    fetch.main(["--params", str(params), *stage_args("fetch", {"raw": out})])


def test_cut_download_writes_nothing_and_the_rerun_succeeds(
    http_server, tiny_mnist, make_canonical, params_file, tmp_path, monkeypatch
):
    base, routes = http_server
    body = npz_bytes(tiny_mnist)
    make_canonical(tiny_mnist)
    monkeypatch.setattr(sources, "KERAS_NPZ_SHA256", sha256(body))
    params = params_file(
        fetch={"sources": ["keras_url"], "keras_url": f"{base}/mnist.npz", "timeout_seconds": 5}
    )
    out = tmp_path / "raw" / "mnist.npz"

    routes["/mnist.npz"] = (body[: len(body) // 2], len(body), 200)  # the connection drops
    with pytest.raises(CommandError, match="no source gave MNIST: keras_url: .*cut short"):
        _fetch(params, out)
    assert not out.parent.exists() or not any(out.parent.iterdir())

    routes["/mnist.npz"] = (body, None, 200)  # the source is back
    _fetch(params, out)
    with np.load(out) as written:
        for name, array in tiny_mnist.items():
            assert np.array_equal(written[name], array)


def test_every_source_unreachable_lists_each(params_file, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras"))
    with socket_port() as port:
        params = params_file(
            fetch={
                "sources": ["local", "keras_cache", "keras_url"],
                "local_path": str(tmp_path / "absent"),
                "keras_url": f"http://127.0.0.1:{port}/mnist.npz",
                "timeout_seconds": 2,
            }
        )
        with pytest.raises(CommandError) as raised:
            _fetch(params, tmp_path / "raw" / "mnist.npz")
    message = str(raised.value)
    assert "\n" not in message
    for source in ("local:", "keras_cache:", "keras_url:"):
        assert source in message
    assert not (tmp_path / "raw").exists()


class socket_port:
    """A loopback port nobody listens on."""

    def __enter__(self) -> int:
        self.port = free_port()
        return self.port

    def __exit__(self, *exc: object) -> None:
        return None


def _flip_middle_byte(data: bytes) -> bytes:
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 0x10
    return bytes(tampered)


@pytest.mark.parametrize(
    "damage",
    [_flip_middle_byte, lambda data: damage_npz(data, "truncated")],
    ids=["one-byte-tampered", "truncated"],
)
def test_preprocess_rejects_a_damaged_raw_file(tiny_mnist, params_file, tmp_path, damage):
    raw = tmp_path / "mnist.npz"
    write_npz(raw, tiny_mnist)
    raw.write_bytes(damage(raw.read_bytes()))
    out = tmp_path / "prepared"
    with pytest.raises(CommandError, match=r"mnist\.npz: not a readable \.npz"):
        params = params_file(preprocess={"val_size": 10})
        paths = {"raw": raw, "prepared": out, "data_report": tmp_path / "data.json"}
        preprocess.main(["--params", str(params), *stage_args("preprocess", paths)])
    assert not out.exists() and not (tmp_path / "data.json").exists()


def test_tracking_server_answering_errors_is_reported(http_server):
    base, routes = http_server
    routes["/health"] = (b"boom", None, 500)
    started = time.monotonic()
    with pytest.raises(CommandError, match="unhealthy: .*/health answered 500"):
        check_reachable(base)
    assert time.monotonic() - started < 5


def _locked_store(tmp_path: Path):
    """An MLflow SQLite store with one run, and a connection holding an exclusive lock."""
    import mlflow

    path = tmp_path / "mlflow.db"
    client = mlflow.MlflowClient(f"sqlite:///{path}")
    experiment = client.create_experiment("locked", artifact_location=tmp_path.as_uri())
    run = client.create_run(experiment)
    holder = sqlite3.connect(path, timeout=0, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    return client, run.info.run_id, holder


def test_locked_store_is_retried_and_no_metric_is_lost(tmp_path, monkeypatch):
    client, run_id, holder = _locked_store(tmp_path)
    release = threading.Timer(1.0, holder.rollback)
    release.start()
    try:
        retry_locked(
            lambda: client.log_metric(run_id, "val_loss", 0.5, step=3),
            "logging a metric",
            attempts=8,
            first_wait=0.2,
        )
    finally:
        release.join()
        holder.close()
    history = client.get_metric_history(run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(3, 0.5)]


@pytest.mark.slow  # waits out MLflow's 20 s SQLite timeout; retry_locked's unit tests cover it
def test_store_locked_for_good_gives_a_clear_error_within_a_bound(tmp_path):
    """MLflow waits up to 20 s per statement (its SQLite busy timeout); then one clear line."""
    client, run_id, holder = _locked_store(tmp_path)
    started = time.monotonic()
    try:
        with pytest.raises(CommandError, match="logging a metric failed: .*locked") as raised:
            retry_locked(
                lambda: client.log_metric(run_id, "loss", 1.0, step=0),
                "logging a metric",
                attempts=1,
            )
    finally:
        holder.close()
    assert time.monotonic() - started < 40
    assert "\n" not in str(raised.value)
