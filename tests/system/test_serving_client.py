"""``serving.client`` as a new user first meets it: docs/serving.md's commands run as written,
and with no server at ``--url`` the client says in one line which URL it tried and what to
do, exit status 2, no traceback.

The client runs from ``.venv-serve`` (tritonclient; ``make serve-setup``), as the page says;
no server is started: the port is bound and never listens, so every connection is refused.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digits_predict.images import load_input
from factories.processes import error_lines
from kernel.paths import PROJECT_ROOT

SERVE_PYTHON = PROJECT_ROOT / ".venv-serve" / "bin" / "python"
SERVING_PAGE = PROJECT_ROOT / "docs" / "serving.md"
DOCUMENTED_URL = "127.0.0.1:8080"
HINT = "start it with make serve or point --url at the server"


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    """A loopback port bound by this test and never listened on: connections are refused, and
    no other process can take it meanwhile."""
    if not SERVE_PYTHON.exists():
        pytest.fail(f"{SERVE_PYTHON} is missing: run `make serve-setup`")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


def _client(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SERVE_PYTHON), "-m", "serving.client", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _documented_block(marker: str) -> list[str]:
    """The indented code block of docs/serving.md that holds ``marker``, one command a line."""
    blocks = re.findall(r"(?:^    \S.*\n)+", SERVING_PAGE.read_text(encoding="utf-8"), re.M)
    (block,) = [block for block in blocks if marker in block]
    return [line.removeprefix("    ") for line in block.splitlines()]


@pytest.mark.parametrize(
    ("url", "tried"),
    [
        ("127.0.0.1:{port}", "http://127.0.0.1:{port}"),
        ("http://127.0.0.1:{port}/", "http://127.0.0.1:{port}"),
        ("https://127.0.0.1:{port}", "https://127.0.0.1:{port}"),
    ],
    ids=["host-port", "http-url", "https-url"],
)
def test_a_server_not_there_is_one_line_naming_the_url_and_the_flag(
    closed_port, url, tried
) -> None:
    result = _client("--url", url.format(port=closed_port), "docs/samples/seven.png")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert error_lines(result.stderr) == [
        f"serving.client: error: cannot reach {tried.format(port=closed_port)}/v2/health/ready: "
        f"connection refused; {HINT}"
    ]


def test_a_url_with_another_scheme_or_a_path_is_a_usage_error(closed_port) -> None:
    for url in (f"ftp://127.0.0.1:{closed_port}", f"http://127.0.0.1:{closed_port}/v2"):
        result = _client("--url", url, "docs/samples/seven.png")
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert error_lines(result.stderr)[-1].startswith(
            f"serving.client: error: argument --url: '{url}': expected host:port"
        )


def test_the_pages_batch_example_runs_as_written(closed_port, tmp_path) -> None:
    """The page's commands, from a folder holding what the project root holds for them: the
    batch file is the five samples' MNIST pixels, and the client's answer without a server is
    the line the page shows."""
    for name in ("docs", ".venv", ".venv-serve"):
        (tmp_path / name).symlink_to(PROJECT_ROOT / name)
    make_batch, ask, comment = _documented_block('np.save("batch.npy"')
    assert comment.startswith("#") and f"--url {DOCUMENTED_URL}" in ask
    made = subprocess.run(
        ["bash", "-c", make_batch], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    loaded = load_input(tmp_path / "batch.npy")
    assert loaded.names == tuple(f"{tmp_path / 'batch.npy'}[{i}]" for i in range(5))
    samples = ("zero", "one", "two", "three", "four")
    expected = [np.asarray(Image.open(PROJECT_ROOT / f"docs/samples/{d}.png")) for d in samples]
    np.testing.assert_array_equal(loaded.images, np.stack(expected).astype(np.float32))

    program, *args = ask.replace(DOCUMENTED_URL, f"127.0.0.1:{closed_port}").split()
    assert program == ".venv-serve/bin/python" and args[:2] == ["-m", "serving.client"]
    result = _client(*args[2:], cwd=tmp_path)
    (documented,) = _documented_block("serving.client: error: cannot reach")
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        documented.replace(DOCUMENTED_URL, f"127.0.0.1:{closed_port}")
    ]
