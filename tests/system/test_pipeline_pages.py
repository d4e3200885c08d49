"""What a person sees of a pipeline run: ``dvc plots show``'s page and the MLflow UI, in a
real browser (Debian's chromium, driven by Playwright), on the tiny end-to-end pipeline."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from factories.mlflow_store import run_of_model
from factories.pipeline import repro_tiny_pipeline
from harness.browser import chromium
from harness.network import free_port, wait_for_http
from harness.processes import run_in_repo


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    ran = repro_tiny_pipeline(tmp_path_factory.mktemp("pages"))
    assert ran["first"].returncode == 0, ran["first"].stderr[-3000:]
    return ran


FIGURES = ("confusion_matrix.png", "misclassified.png", "training_curves.png")


def test_the_plots_page_renders_offline_in_a_browser(pipeline, tmp_path):
    repo, env = pipeline["repo"], pipeline["env"]
    out = tmp_path / "plots"
    shown = run_in_repo(["dvc", "plots", "show", "-o", str(out)], repo, env)
    assert shown.returncode == 0, shown.stderr
    assert "cdn.jsdelivr" not in (out / "index.html").read_text()

    requests, failed, errors = [], [], []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("request", lambda request: requests.append(request.url))
        page.on("requestfailed", lambda request: failed.append(request.url))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((out / "index.html").as_uri())
        page.wait_for_function(
            "document.querySelectorAll('canvas.marks, svg.marks').length >= 3", timeout=20000
        )
        charts = page.locator("canvas.marks, svg.marks").count()
        images = [img.get_attribute("src") for img in page.locator("img").all()]
        page.screenshot(path=str(tmp_path / "plots.png"), full_page=True)
    assert charts == 3, "training loss, training accuracy, confusion: each drawn once"
    names = sorted(Path(src).name for src in images)
    assert names == [f"workspace_reports_figures_{figure}" for figure in FIGURES], names
    assert not failed and not errors, (failed, errors)
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    assert (tmp_path / "plots.png").stat().st_size > 10_000


def _chart_sections(page_text: str) -> list[str]:
    """The section titles of MLflow's chart view: a title, its chart count, "Add chart"."""
    lines = [line.strip() for line in page_text.splitlines() if line.strip()]
    return [
        title
        for title, count, button in zip(lines, lines[1:], lines[2:], strict=False)
        if count.startswith("(") and count.endswith(")") and button == "Add chart"
    ]


def _address_once_answering(log: Path, server: subprocess.Popen) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and server.poll() is None:
        for line in log.read_text().splitlines():
            if line.startswith("MLflow UI on ") and ": http://" in line:
                return line.rsplit(": ", 1)[1]
        time.sleep(0.5)
    raise AssertionError(f"no address line; the log:\n{log.read_text()[-3000:]}")


def test_the_mlflow_ui_shows_the_run_with_its_test_results_first(pipeline, tmp_path):
    import mlflow

    repo, env = pipeline["repo"], pipeline["env"]
    run = run_of_model(mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]), repo / "models/run.json")
    port = free_port()
    log = tmp_path / "ui.log"
    with open(log, "w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "tracking", "ui"],
            cwd=repo,
            env={**env, "MLFLOW_UI_PORT": str(port)},
            stdout=sink,
            stderr=sink,
            stdin=subprocess.DEVNULL,
        )
    try:
        address = _address_once_answering(log, server)
        # printed only once the server answers: the first click works
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=5)
        assert address == (
            f"http://127.0.0.1:{port}/#/experiments/{run.info.experiment_id}"
            "/runs?workflowType=machine_learning"
        )
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(address)
            page.get_by_text(run.info.run_name).first.wait_for(timeout=60000)
            assert run.info.run_name.startswith("workspace-")
            page.goto(address + "&compareRunsMode=CHART")
            page.get_by_text("Add chart").first.wait_for(timeout=60000)
            sections = _chart_sections(page.inner_text("body"))
            page.screenshot(path=str(tmp_path / "charts.png"))
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert sections[:4] == ["test", "test_by_digit", "test_int8", "test_onnx"], sections
    assert {"train", "val", "timing"} <= set(sections), sections
