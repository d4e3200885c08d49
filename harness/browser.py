"""A real browser: Debian's chromium, driven by Playwright (no download); strokes drawn on the
draw-a-digit page's pad as a person draws them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

PAD_SIDE = 280  # the drawing pad's canvas, in its own pixels
CHROMIUM = Path("/usr/bin/chromium")  # Debian's, installed by `make browser`
FLAGS = [
    "--headless=new",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} missing: run make browser"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def last_result_sequence(page: Page) -> int:
    """The number of the page's last answer (0 before its first)."""
    return int(page.evaluate("window.lastResult ? window.lastResult.sequence : 0"))


def draw_stroke(page: Page, stroke: Sequence[tuple[int, int]], steps: int) -> int:
    """Draw ``stroke`` (points in the pad's own pixels) with the mouse, ``steps`` moves from
    one point to the next; return the number of the answer before it, to wait for the next."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / PAD_SIDE
    points = [(box["x"] + x * scale, box["y"] + y * scale) for x, y in stroke]
    before = last_result_sequence(page)
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point, steps=steps)
    page.mouse.up()
    return before
