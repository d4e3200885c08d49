"""Write ``plots/page.html``: the page ``dvc plots show`` fills, with Vega inlined.

DVC's own page loads vega, vega-lite and vega-embed from a CDN, so it is blank
without internet. This template carries the three libraries (from this folder's
npm lock) inside the page, and ``.dvc/config`` points ``plots.html_template`` at it.
Run by ``make setup`` after ``npm ci``; the page is generated, not committed.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIBRARIES = (
    "vega/build/vega.min.js",
    "vega-lite/build/vega-lite.min.js",
    "vega-embed/build/vega-embed.min.js",
)
# DVC's page, with its {scripts} (the CDN tags) replaced by the libraries themselves
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
__LIBRARIES__
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>"""


def build(modules: Path, out: Path) -> None:
    scripts = []
    for library in LIBRARIES:
        # a "</script" inside the code would end the inline element early
        code = (modules / library).read_text(encoding="utf-8").replace("</script", "<\\/script")
        scripts.append(f"<script>\n{code}\n</script>")
    out.write_text(PAGE.replace("__LIBRARIES__", "\n".join(scripts)), encoding="utf-8")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "page.html"
    build(HERE / "node_modules", target)
    print(f"plots: wrote {target}", file=sys.stderr)
