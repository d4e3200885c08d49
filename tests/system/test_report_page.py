"""The review page as a code host shows it: the Markdown rendered to HTML (markdown-it-py,
GitHub's tables) and opened in headless Chromium, every image drawn from its relative link
and no request leaving the machine; a screenshot of it is taken.

The review is of real results: a clone of this repository, whose committed reports the
workspace edits as a change would (fewer epochs, a lower accuracy, digit 8 worse).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from harness.browser import chromium
from kernel.paths import PROJECT_ROOT

STYLE = """
body { font: 14px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 980px; margin: 24px auto; color: #1f2328; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; }
tr:nth-child(2n) { background: #f6f8fa; }
code { background: #eff1f3; padding: 1px 4px; border-radius: 4px; font-size: 85%; }
img { max-width: 100%; }
h1 { font-size: 1.6em; border-bottom: 1px solid #d0d7de; }
h2 { font-size: 1.3em; border-bottom: 1px solid #d0d7de; margin-top: 28px; }
"""


def render_html(markdown: str) -> str:
    """The page as HTML: CommonMark with GitHub's tables and strikethrough."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><style>{STYLE}</style></head>'
        f"<body>{body}</body></html>"
    )


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def changed_clone(root: Path) -> Path:
    """A clone of this repository with a change in its workspace: params and reports edited."""
    repo = root / "repo"
    _git(PROJECT_ROOT, "clone", "-q", "--no-hardlinks", str(PROJECT_ROOT), str(repo))
    params = repo / "params.yaml"
    params.write_text(
        params.read_text()
        .replace("  epochs: 15\n", "  epochs: 8\n", 1)
        .replace("  dropout: 0.3\n", "  dropout: 0.2\n", 1)
    )
    reports = repo / "reports"
    metrics = json.loads((reports / "metrics.json").read_text())
    metrics.update(accuracy=metrics["accuracy"] - 0.0031, loss=metrics["loss"] + 0.0042)
    (reports / "metrics.json").write_text(json.dumps(metrics, indent=2))
    classes = json.loads((reports / "classes.json").read_text())
    classes["per_class"]["8"]["f1"] -= 0.012
    classes["per_class"]["1"]["f1"] += 0.006
    (reports / "classes.json").write_text(json.dumps(classes, indent=2))
    history = (reports / "history.csv").read_text().splitlines()
    (reports / "history.csv").write_text("\n".join(history[:9]) + "\n")
    rows = (reports / "confusion.csv").read_text().splitlines()
    moved = 0
    for i, line in enumerate(rows[1:], start=1):
        if line == "8,8" and moved < 25:
            rows[i], moved = ("8,3" if moved % 2 else "8,5"), moved + 1
    (reports / "confusion.csv").write_text("\n".join(rows) + "\n")
    return repo


def make_review(repo: Path, out: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-m", "report", "--out", str(out)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return (out / "index.md").read_text(encoding="utf-8")


def screenshot(review: Path, html_dir: Path, shot: Path) -> dict:
    """Render ``review``/index.md beside copies of its images, open it in Chromium, save a
    full-page screenshot to ``shot``; what the page showed."""
    html_dir.mkdir(parents=True, exist_ok=True)
    for image in review.glob("*.png"):
        (html_dir / image.name).write_bytes(image.read_bytes())
    page_file = html_dir / "index.html"
    page_file.write_text(render_html((review / "index.md").read_text(encoding="utf-8")))
    outside: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1040, "height": 900})

        def route(request_route) -> None:
            url = request_route.request.url
            if url.startswith("file://"):
                request_route.continue_()
            else:
                outside.append(url)
                request_route.abort()

        page.route("**/*", route)
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        shown = page.evaluate(
            """() => ({
                images: [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth]),
                tables: document.querySelectorAll('table').length,
                headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
                text: document.body.innerText,
            })"""
        )
        page.screenshot(path=str(shot), full_page=True)
    shown["outside"] = outside
    return shown


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("review-page")
    repo = changed_clone(root)
    make_review(repo, root / "review")
    result = screenshot(root / "review", root / "html", root / "review.png")
    result["shot"] = root / "review.png"
    return result


def test_every_image_draws_from_its_relative_link(shown) -> None:
    assert [src for src, _ in shown["images"]] == ["curves.png", "confusion.png"]
    assert all(width > 0 for _, width in shown["images"]), shown["images"]
    assert shown["outside"] == [], "the page reaches for nothing beyond the file system"


def test_tables_and_sections_render(shown) -> None:
    assert shown["tables"] >= 6, "sides, params, metrics, two gates, per-digit F1, environment"
    assert shown["headings"] == [
        "Params that changed",
        "Test metrics",
        "Gates",
        "The champion rule",
        "Per-digit F1 (changes of 0.5 pts or more)",
        "Training curves",
        "Confusion matrices",
        "Environment",
    ]
    text = shown["text"]
    assert "train.epochs\t15\t8" in text and "train.dropout\t0.3\t0.2" in text
    assert "-0.31 pts\t✘ worse" in text
    assert "f1 of digit 8" in text and "f1 of digit 1" in text
    assert "|" not in text.split("Environment")[0].replace("\\|", ""), "no raw table syntax"


def test_the_screenshot_is_a_whole_page(shown) -> None:
    with Image.open(shown["shot"]) as image:
        assert image.format == "PNG"
        assert image.width >= 1000 and image.height >= 2000, image.size
