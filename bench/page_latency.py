"""The draw-a-digit page's latency: from the end of a stroke to the answer on the page.

The page times itself with ``performance.now()``, from the start of its pointerup handler
to the moment the digit and the bars are in the page (``window.lastResult``); the
browser's paint, which follows, is not counted, nor the report of the answer that the page
then sends its server (logged to a request log in a temporary folder, as ``make demo``
logs it). Headless Debian chromium, strokes drawn with Playwright's mouse, one warm-up
stroke first.

    python -m bench.page_latency    # prints the figures for the pipeline's ONNX model as JSON
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from harness.browser import chromium, draw_stroke, last_result_sequence
from kernel.paths import PROJECT_ROOT, artifact

if TYPE_CHECKING:
    from playwright.sync_api import Page

RUNS = 20
# Strokes in the pad's own coordinates (it is 280 x 280), one per run, taking turns:
# a 7, a 1, an L and a 2-like zigzag, so the preprocessing sees different crops.
STROKES = (
    ((70, 60), (210, 60), (120, 230)),
    ((140, 40), (140, 240)),
    ((90, 40), (90, 230), (200, 230)),
    ((80, 80), (200, 60), (90, 230), (210, 230)),
)


def bench_page(site_dir: Path, runs: int = RUNS) -> dict:
    """Serve ``site_dir`` (built by ``demo.build``, with a model) and time ``runs`` strokes.

    Returns ``{"stroke_to_answer_ms": {"median": ..., "p90": ..., "runs": runs}}``.
    """
    from demo.answers import UNREGISTERED, PageAnswers
    from demo.serve import make_server
    from monitor.request_log import RequestLog, ServedModel

    log_folder = tempfile.mkdtemp(prefix="page-requests-")
    identity = ServedModel("mnist-digits", UNREGISTERED)
    answers = PageAnswers(RequestLog(log_folder, "page"), {"fp32": identity, "int8": identity})
    server = make_server(Path(site_dir), port=0, answers=answers)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 800, "height": 700})
            page.goto(f"http://{host}:{port}/")
            page.wait_for_function("document.body.dataset.modelState !== 'loading'")
            state = page.evaluate("document.body.dataset.modelState")
            if state != "ready":
                raise SystemExit(f"bench: the page at {site_dir} has no model to run ({state})")
            _stroke_to_answer(page, STROKES[0])  # warm-up: the first run compiles the page's code
            samples = [_stroke_to_answer(page, STROKES[run % len(STROKES)]) for run in range(runs)]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        answers.close()
        shutil.rmtree(log_folder, ignore_errors=True)
    return {
        "stroke_to_answer_ms": {
            "median": round(statistics.median(samples), 2),
            "p90": round(statistics.quantiles(samples, n=10, method="inclusive")[-1], 2),
            "runs": runs,
        }
    }


def _stroke_to_answer(page: Page, stroke: tuple[tuple[int, int], ...]) -> float:
    """Clear the pad, draw ``stroke``, and return the page's own stroke-to-answer time."""
    before = last_result_sequence(page)
    page.click("#clear")
    page.wait_for_function(f"window.lastResult && window.lastResult.sequence > {before}")
    before = draw_stroke(page, stroke, steps=8)
    page.wait_for_function(
        f"window.lastResult && window.lastResult.sequence > {before} "
        "&& window.lastResult.strokeToAnswerMs !== null"
    )
    return float(page.evaluate("window.lastResult.strokeToAnswerMs"))


def main() -> int:
    from demo.build import build_site

    model = PROJECT_ROOT / artifact("onnx_model")
    if not model.exists():
        print(
            f"bench: {artifact('onnx_model')} is missing; run `make repro` first", file=sys.stderr
        )
        return 1
    with tempfile.TemporaryDirectory() as work:
        site = Path(work) / "site"
        build_site(site, {"fp32": model})
        print(json.dumps(bench_page(site), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
