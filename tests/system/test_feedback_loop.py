"""The loop after hand-off, end to end on rendered digits: the champion is served; people
open 100 digits drawn in a style MNIST lacks (thick strokes, tilted) on the page and say
which digit each was; a person accepts them in review (``python -m demo.feedback review``);
the feedback stage gathers them; ``dvc exp run`` trains with them;
the new model is better on the drawn test set and within the tolerance on MNIST's, so
``@champion`` moves by the rule; the running server switches without a restart and a
request after the switch is logged under the new version."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from factories.data import digit_images
from factories.pipeline import repro_tiny_pipeline
from feedback.store import FeedbackStore
from harness.browser import chromium
from harness.network import free_port_pair, wait_for_http
from harness.processes import run_in_repo
from kernel.paths import PROJECT_ROOT
from monitor.window import read_window

SERVE_BIN = PROJECT_ROOT / ".venv-serve" / "bin"
NAME = "mnist-digits"
TOLERANCE = 0.02  # 200 MNIST test images: one image is half a point


def _drawn_style(images: np.ndarray) -> np.ndarray:
    """Strokes three pixels thick, the digit tilted by 35 degrees."""
    tilted = [ndimage.rotate(image, 35, reshape=False, order=1) for image in images]
    return np.stack([ndimage.grey_dilation(image, size=(3, 3)) for image in tilted])


def _ok(args: list[str], repo: Path, env: dict, timeout: float = 900) -> str:
    done = run_in_repo(args, repo, env, timeout=timeout)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout + done.stderr


def _correct_on_the_page(site_url: str, pictures: list[Path], labels: np.ndarray) -> int:
    """Open each picture on the page and say which digit it is; how many it got wrong."""
    wrong = 0
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 800, "height": 700})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(site_url)
        page.wait_for_function("document.body.dataset.modelState === 'ready'", timeout=30000)
        page.wait_for_function("window.lastResult && window.lastResult.sequence >= 1")
        for picture, label in zip(pictures, labels, strict=True):
            before = page.evaluate("window.lastResult.sequence")
            page.set_input_files("#file", str(picture))
            page.wait_for_function(f"window.lastResult.sequence > {before}")
            answer = page.evaluate("window.lastResult.digit")
            if answer == label:
                page.click("#right")
            else:
                wrong += 1
                page.click(f"#labels button[data-label='{label}']")
            page.wait_for_function(
                "['stored', 'duplicate'].includes(document.body.dataset.feedbackState)"
            )
        assert not errors, errors
    return wrong


@pytest.mark.slow  # two trainings of the pipeline, MLServer, a browser and 100 corrections
def test_corrections_teach_the_next_model_which_becomes_champion_and_is_served(
    tmp_path, monkeypatch
) -> None:
    import mlflow

    pipeline = repro_tiny_pipeline(tmp_path)
    assert pipeline["first"].returncode == 0, pipeline["first"].stderr[-3000:]
    repo, env = pipeline["repo"], {**pipeline["env"], "PYTHONPATH": str(PROJECT_ROOT)}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])

    # the champion, served as `make serve` serves it
    port = free_port_pair()
    server_output = tmp_path / "mlserver.log"
    with open(server_output, "w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "serving", "--port", str(port),
             "--mlserver", str(SERVE_BIN / "mlserver")],
            cwd=repo, env=env, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        wait_for_http(
            f"http://127.0.0.1:{port}/v2/models/{NAME}/ready",
            timeout=180,
            alive=lambda: server.poll() is None,
        )

        # the page, with its answers logged and its corrections stored in the repo's store
        monkeypatch.syspath_prepend(str(PROJECT_ROOT))
        answers = importlib.import_module("demo.answers")
        feedback = importlib.import_module("demo.feedback")
        pages = importlib.import_module("demo.pages")
        serve = importlib.import_module("demo.serve")
        build = importlib.import_module("demo.build")
        site = tmp_path / "site"
        build.build_site(site, {"fp32": repo / "models" / "model.onnx"})
        identity = answers.registry_identity(
            repo / "models" / "model.onnx", NAME, "fp32", ("champion", "candidate")
        )
        assert (identity.version, identity.alias) == ("1", "champion")
        store = FeedbackStore(repo / "data" / "feedback-store")
        # one person, 100 corrections in a minute or two
        limit = pages.RateLimit(1000, 1000, "corrections")
        page_server = serve.make_server(
            site, 0, feedback=feedback.PageFeedback(store, {"fp32": identity}, limit=limit)
        )
        threading.Thread(target=page_server.serve_forever, daemon=True).start()
        images, labels = digit_images(100, seed=31)
        pictures = []
        for index, image in enumerate(_drawn_style(images)):
            pictures.append(tmp_path / "drawn" / f"{index:03d}.png")
            pictures[-1].parent.mkdir(exist_ok=True)
            Image.fromarray(image.astype(np.uint8), mode="L").save(pictures[-1])
        try:
            wrong = _correct_on_the_page(
                f"http://127.0.0.1:{page_server.server_address[1]}/", pictures, labels
            )
        finally:
            page_server.shutdown()
            page_server.server_close()
        assert wrong >= 10, f"the style is one MNIST lacks: the champion got {wrong} of 100 wrong"
        assert store.count() == 0, "nothing reaches the training data unreviewed"
        assert store.pending_count() >= 95  # the same picture twice is kept once

        # a person reviews them and accepts them all
        listed = _ok([sys.executable, "-m", "demo.feedback", "review"], repo, env)
        assert f"feedback: {store.pending_count()} waiting for review" in listed, listed
        _ok([sys.executable, "-m", "demo.feedback", "review", "accept", "--all"], repo, env)
        assert store.pending_count() == 0 and store.count() >= 95

        # the feedback stage, then an experiment that trains with the corrections
        _ok(["dvc", "repro", "feedback"], repo, env)
        report = json.loads((repo / "reports" / "feedback.json").read_text())
        assert report["train"]["images"] + report["drawn"]["images"] == store.count()
        assert report["corrections"] == wrong
        champion_metrics = json.loads((repo / "reports" / "metrics.json").read_text())
        said = _ok(
            ["dvc", "exp", "run", "-n", "learned",
             "-S", "feedback.train_weight=0.3", "-S", f"export.promotion_tolerance={TOLERANCE}"],
            repo, env,
        )  # fmt: skip
        metrics = json.loads((repo / "reports" / "metrics.json").read_text())
        client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
        champion = client.get_model_version_by_alias(NAME, "champion")
        promoted = str(champion.version)
        old = client.get_model_version(NAME, "1")
        new_drawn = float(champion.tags["drawn_accuracy"])
        old_drawn = float(old.tags[f"drawn_accuracy.{champion.tags['drawn_digest']}"])
        assert new_drawn > old_drawn, (new_drawn, old_drawn)
        assert metrics["drawn"]["accuracy"] == pytest.approx(new_drawn)
        assert metrics["accuracy"] >= champion_metrics["accuracy"] - TOLERANCE - 1e-9
        assert promoted != "1", said
        assert champion.tags["promotion.decision"] == "promoted", champion.tags
        assert "drawn" in champion.tags["promotion.reason"]

        # the running server switches, and the next request is logged under the new version
        switched = _ok(
            [sys.executable, "-m", "serving", "reload", "--port", str(port)], repo, env, 300
        )
        assert f"switched {NAME} from v1 to v{promoted}" in switched, switched
        digits = tmp_path / "after.npy"
        np.save(digits, images[:3].astype(np.float32))
        asked = subprocess.run(
            [str(SERVE_BIN / "python"), "-m", "serving.client", "--url", f"127.0.0.1:{port}",
             "--model", NAME, str(digits)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        deadline = time.monotonic() + 20
        while True:
            folder = repo / "logs" / "requests"  # the writer makes it with its first batch
            log = read_window(folder) if folder.is_dir() else None
            if log is not None and (log["version"].astype(str) == promoted).sum() >= 3:
                break
            assert time.monotonic() < deadline, None if log is None else log.tail()
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=60)
