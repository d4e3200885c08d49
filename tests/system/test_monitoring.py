"""The deployed model watched: ``python -m serving`` logs every answer, and ``python -m
monitor`` (``make monitor``) tells MNIST-like traffic from digits drawn thicker, off-centre
and smaller, on a tiny model registered in a store of its own and served by MLServer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from scipy import ndimage

from factories.data import digit_images
from factories.params import TINY_EXPORT
from factories.trained import export_args, train_tiny
from harness.browser import chromium
from harness.network import free_port_pair, wait_for_http
from kernel.paths import PROJECT_ROOT
from monitor.descriptors import DESCRIPTORS
from monitor.window import read_window
from stages import export

SERVE_BIN = PROJECT_ROOT / ".venv-serve" / "bin"
NAME = TINY_EXPORT["registered_model_name"]


@pytest.fixture(scope="module")
def registered(tmp_path_factory, mlflow_template_db) -> SimpleNamespace:
    ws = train_tiny(tmp_path_factory.mktemp("monitoring"), mlflow_template_db)
    with ws.store():
        export.main(export_args(ws, ws.root / "export"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": ws.uri, "PYTHONPATH": str(PROJECT_ROOT)}
    return SimpleNamespace(ws=ws, env=env, log=ws.root / "logs" / "requests")


class _Server:
    """``python -m serving`` (what ``make serve`` runs) on two free loopback ports."""

    def __init__(self, registered: SimpleNamespace, name: str) -> None:
        self.port = free_port_pair()
        self.output = registered.ws.root / f"{name}.log"
        with open(self.output, "w") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "serving", "--port", str(self.port),
                 "--mlserver", str(SERVE_BIN / "mlserver")],
                cwd=registered.ws.root, env=registered.env, stdout=sink, stderr=sink,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.url = f"127.0.0.1:{self.port}"
        wait_for_http(
            f"http://{self.url}/v2/models/{NAME}/ready",
            timeout=180,
            alive=lambda: self.process.poll() is None,
        )

    def stop(self) -> None:
        self.process.terminate()
        assert self.process.wait(timeout=60) == 0, self.output.read_text()[-2000:]


@pytest.fixture(scope="module")
def server(registered):
    served = _Server(registered, "mlserver")
    yield served
    served.stop()


def _send(url: str, images: np.ndarray, folder: Path) -> subprocess.CompletedProcess:
    """``serving.client`` (tritonclient, from .venv-serve) with the images as one .npy."""
    folder.mkdir(parents=True, exist_ok=True)
    digits = folder / f"digits-{time.monotonic_ns()}.npy"
    np.save(digits, images.astype(np.float32))
    done = subprocess.run(
        [str(SERVE_BIN / "python"), "-m", "serving.client", "--url", url, "--model", NAME,
         "--json", str(digits)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def _logged(folder: Path, count: int, timeout: float = 20) -> int:
    """Wait until the log holds ``count`` records (the writer is a thread of the server)."""
    deadline = time.monotonic() + timeout
    while True:
        found = len(read_window(folder)) if folder.exists() else 0
        if found >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _monitor(registered, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        cwd=registered.ws.root, env=registered.env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


def _odd(images: np.ndarray) -> np.ndarray:
    """Strokes three pixels thicker, the digit shrunk to 60 % and moved to the top left."""
    out = np.zeros(images.shape, dtype=np.float32)
    for index, image in enumerate(images):
        small = ndimage.zoom(ndimage.grey_dilation(image, size=(3, 3)), 0.6, order=1)
        out[index, 1 : 1 + small.shape[0], 1 : 1 + small.shape[1]] = small
    return np.clip(out, 0, 255)


def test_mnist_like_traffic_is_no_drift_and_thick_shifted_small_digits_are(
    registered, server, tmp_path
) -> None:
    like_training, _ = digit_images(300, seed=7)
    before = _logged(registered.log, 0, timeout=0)
    _send(server.url, like_training, tmp_path)
    assert _logged(registered.log, before + 300) == before + 300

    calm = _monitor(registered, "--last", "300")
    assert calm.returncode == 0, calm.stderr
    assert "no drift" in calm.stdout and f"{NAME} v1 (@champion)" in calm.stdout, calm.stdout
    out = registered.ws.root / "reports" / "monitoring"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["drift"] is False and summary["window"]["answers"] == 300
    assert summary["window"]["models"] == {f"{NAME} v1 (@champion)": 300}
    assert (out / "report.html").stat().st_size > 100_000
    calm_html = (out / "report.html").read_bytes()

    _send(server.url, _odd(like_training), tmp_path)
    assert _logged(registered.log, before + 600) == before + 600
    flagged = _monitor(registered, "--last", "300")
    assert flagged.returncode == 1, flagged.stderr
    last = flagged.stderr.strip().splitlines()[-1]
    assert last.startswith("monitor: drift: ") and "descriptors drifted" in last, last
    for moved in ("stroke_width", "height", "width", "centre_dx", "centre_dy", "ink_fraction"):
        assert moved in last, (moved, last)
    assert "strokes" not in last, "a digit's pieces did not change"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["drift"] is True and summary["descriptors"]["height"]["drifted"]
    assert (
        summary["descriptors"]["height"]["window_mean"]
        < summary["descriptors"]["height"]["reference_mean"]
    )
    assert (out / "report.html").read_bytes() != calm_html

    # each report is an MLflow run of the monitoring experiment, the HTML its artifact
    with registered.ws.store():
        client = mlflow.MlflowClient()
        experiment = client.get_experiment_by_name("monitoring")
        runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])
        assert [run.data.tags["monitor.drift"] for run in runs[-2:]] == ["false", "true"]
        newest = runs[-1]
        assert newest.data.tags["model.version"] == f"{NAME} v1"
        assert newest.data.metrics["drift/share"] == pytest.approx(summary["drifted_share"])
        assert set(f"drift/{name}" for name in DESCRIPTORS) <= set(newest.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(newest.info.run_id)}
        assert artifacts == {"report.html", "summary.json"}

    # too small a window is one line, and the last report stays
    kept = (out / "summary.json").read_bytes()
    few = _monitor(registered, "--last", "5")
    assert few.returncode == 1
    assert few.stderr.strip().splitlines() == [
        "monitor: error: 5 answers in the window (the last 5 answers in logs/requests); at "
        "least 100 are needed to judge drift (monitor.min_requests)"
    ]
    assert (out / "summary.json").read_bytes() == kept

    # the report is Evidently's page, whole and offline: it names every descriptor
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route("**/*", lambda route: route.abort() if route.request.url.startswith("http")
                   else route.continue_())  # fmt: skip
        page.goto((out / "report.html").as_uri())
        page.wait_for_function("document.body.innerText.includes('stroke_width')", timeout=60000)
        text = page.inner_text("body")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
    assert all(name in text for name in DESCRIPTORS), text[:2000]
    assert "Dataset Drift" in text or "Drifted" in text or "drift" in text.lower()


def test_the_log_survives_a_restart_and_two_servers_write_side_by_side(
    registered, server, tmp_path
) -> None:
    images, _ = digit_images(40, seed=11)
    second = _Server(registered, "second")
    try:
        before = _logged(registered.log, 0, timeout=0)
        files_before = {p: p.read_bytes() for p in registered.log.glob("requests-*.jsonl")}
        sends = [
            threading.Thread(target=_send, args=(url, images[k::4], tmp_path / f"{k}"))
            for k, url in enumerate([server.url, second.url] * 2)
        ]
        for send in sends:
            send.start()
        for send in sends:
            send.join()
        assert _logged(registered.log, before + 40) == before + 40
        second.stop()
        restarted = _Server(registered, "restarted")
        _send(restarted.url, images[:10], tmp_path / "again")
        assert _logged(registered.log, before + 50) == before + 50
        restarted.stop()
    finally:
        if second.process.poll() is None:
            second.stop()
    for path, data in files_before.items():
        assert path.read_bytes()[: len(data)] == data, f"{path.name} was rewritten"
    lines = [
        json.loads(line)
        for path in registered.log.glob("requests-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert len(lines) == before + 50, "every line whole"
    writers = {path.name.rsplit("-", 1)[0] for path in registered.log.glob("requests-*.jsonl")}
    assert len(writers) >= 3, writers  # the first server, the second, the restarted one
