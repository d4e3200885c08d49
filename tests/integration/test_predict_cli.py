"""digits-predict: answers, errors one line each, exit codes, and no TensorFlow anywhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digits_predict.cli import main
from factories.onnx_models import (
    HORIZONTAL_DIGIT,
    VERTICAL_DIGIT,
    bar_image,
    random_weights,
    stroke_weights,
    tiny_model,
    write_model,
)
from factories.tf_blocker import BLOCKED, BLOCKED_IMPORT_EXIT, run_blocked
from kernel.paths import PROJECT_ROOT

# A warning would reach the user as an extra stderr line: make it fail the test instead.
pytestmark = pytest.mark.filterwarnings("error")

ERROR_PREFIX = "digits-predict: error: "
ANSWER = re.compile(r"^(?P<input>.+): digit (?P<digit>\d) \(p=(?P<p>[01]\.\d{3})\)$")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stroke model: a vertical bar is a 1, a horizontal bar a 7."""
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    return write_model(path, tiny_model(*stroke_weights()))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good inputs of every kind, with the digit each one shows."""
    folder = tmp_path_factory.mktemp("inputs")
    vertical, horizontal = bar_image(vertical=True), bar_image(vertical=False)
    # A photo-like image: a thick dark vertical stroke on a large light page.
    page = np.full((300, 200), 230, dtype=np.uint8)
    page[60:250, 90:115] = 30
    paths = {
        "one.npy": folder / "one.npy",
        "batch.npy": folder / "batch.npy",
        "stroke.png": folder / "stroke.png",
        "bar.jpg": folder / "bar.jpg",
    }
    np.save(paths["one.npy"], vertical)
    np.save(paths["batch.npy"], np.stack([horizontal, vertical, horizontal]).astype(np.float32))
    Image.fromarray(page).save(paths["stroke.png"])
    Image.fromarray(255 - horizontal).resize((280, 280)).save(paths["bar.jpg"], quality=90)
    return paths


def _answers(stdout: str) -> dict[str, int]:
    matches = [ANSWER.match(line) for line in stdout.splitlines()]
    assert all(matches), f"unexpected output line in {stdout!r}"
    return {match["input"]: int(match["digit"]) for match in matches}


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_every_input_is_answered_in_one_line(
    model_path: Path, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--model", str(model_path), *map(str, inputs.values())])
    captured = capsys.readouterr()
    assert status == 0 and captured.err == ""
    batch = inputs["batch.npy"]
    assert _answers(captured.out) == {
        str(inputs["one.npy"]): VERTICAL_DIGIT,
        f"{batch}[0]": HORIZONTAL_DIGIT,
        f"{batch}[1]": VERTICAL_DIGIT,
        f"{batch}[2]": HORIZONTAL_DIGIT,
        str(inputs["stroke.png"]): VERTICAL_DIGIT,
        str(inputs["bar.jpg"]): HORIZONTAL_DIGIT,
    }
    assert all(float(ANSWER.match(line)["p"]) > 0.95 for line in captured.out.splitlines())


def test_json_lists_answers_and_errors(
    model_path: Path, inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.png"
    status = main(["--json", "--model", str(model_path), str(inputs["one.npy"]), str(missing)])
    captured = capsys.readouterr()
    answers = json.loads(captured.out)
    assert status == 1
    assert answers[0]["input"] == str(inputs["one.npy"])
    assert answers[0]["digit"] == VERTICAL_DIGIT
    assert len(answers[0]["probabilities"]) == 10
    assert answers[0]["probability"] == max(answers[0]["probabilities"]) > 0.99
    assert sum(answers[0]["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert answers[1] == {"input": str(missing), "error": answers[1]["error"]}
    assert "no such file" in answers[1]["error"]
    assert _error_lines(captured.err) == [f"{ERROR_PREFIX}{missing}: {answers[1]['error']}"]


BAD_INPUTS = {
    "missing.png": (None, "no such file"),
    "empty.png": (b"", r"file is empty \(0 bytes\)"),
    "text.png": (b"just some words", "not a recognised image format"),
    "flat.npy": (np.zeros(784), r"shape \(784,\)"),
    "nan.npy": (np.full((28, 28), np.nan), "784 NaN or infinite"),
    "bool.npy": (np.zeros((28, 28), dtype=bool), "dtype bool"),
    "blank.png": (Image.new("L", (50, 50), 255), "image is blank"),
}


@pytest.mark.parametrize("bad_name", list(BAD_INPUTS))
def test_one_bad_input_costs_one_error_line_and_exit_1(
    bad_name: str,
    model_path: Path,
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    content, message = BAD_INPUTS[bad_name]
    bad = tmp_path / bad_name
    if isinstance(content, bytes):
        bad.write_bytes(content)
    elif isinstance(content, np.ndarray):
        np.save(bad, content)
    elif isinstance(content, Image.Image):
        content.save(bad)
    good = [str(inputs["one.npy"]), str(inputs["stroke.png"])]
    status = main(["--model", str(model_path), good[0], str(bad), good[1]])
    captured = capsys.readouterr()
    assert status == 1
    (line,) = _error_lines(captured.err)
    assert line.startswith(f"{ERROR_PREFIX}{bad}: ")
    assert re.search(message, line)
    assert _answers(captured.out) == dict.fromkeys(good, VERTICAL_DIGIT)


def test_a_model_that_cannot_be_loaded_exits_2_in_one_line(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--model", str(tmp_path / "nowhere.onnx"), str(inputs["one.npy"])])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert _error_lines(captured.err) == [
        f"{ERROR_PREFIX}model file {tmp_path / 'nowhere.onnx'} does not exist; "
        "expected an ONNX model"
    ]


def test_a_model_that_breaks_the_contract_exits_2_in_one_line(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    renamed = write_model(
        tmp_path / "renamed.onnx", tiny_model(*random_weights(), output_name="scores")
    )
    status = main(["--model", str(renamed), str(inputs["one.npy"])])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    (line,) = _error_lines(captured.err)
    assert line.startswith(ERROR_PREFIX) and "output is named 'scores'" in line


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as no_inputs:
        main([])
    with pytest.raises(SystemExit) as unknown_option:
        main(["--colour", "x.png"])
    assert no_inputs.value.code == unknown_option.value.code == 2
    assert "usage: digits-predict" in capsys.readouterr().err


def test_default_model_path_is_models_model_onnx(
    inputs: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    write_model(tmp_path / "models" / "model.onnx", tiny_model(*stroke_weights()))
    assert main([str(inputs["one.npy"])]) == 0
    assert _answers(capsys.readouterr().out) == {str(inputs["one.npy"]): VERTICAL_DIGIT}


# --- in a subprocess, with TensorFlow, Keras, MLflow, onnx and stages unimportable --------------


def test_cli_runs_with_tensorflow_and_onnx_blocked(
    model_path: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    argv = [
        "digits-predict",
        "--model",
        str(model_path),
        str(inputs["one.npy"]),
        str(bad),
        str(inputs["stroke.png"]),
    ]
    # runpy runs the package's __main__, as `python -m digits_predict` does.
    code = (
        f"import runpy, sys; sys.argv = {argv!r}; runpy.run_module('digits_predict', "
        "run_name='__main__', alter_sys=True)"
    )
    result = run_blocked(code)
    assert result.returncode == 1, result.stderr
    (line,) = _error_lines(result.stderr)
    assert line.startswith(f"{ERROR_PREFIX}{bad}: ")
    assert _answers(result.stdout) == {
        str(inputs["one.npy"]): VERTICAL_DIGIT,
        str(inputs["stroke.png"]): VERTICAL_DIGIT,
    }


def test_the_blocker_really_blocks() -> None:
    """Without this, a blocker that blocks nothing would pass every test above."""
    probe = (
        "import importlib, json\n"
        "results = {}\n"
        "for name in ['tensorflow', 'keras', 'mlflow', 'onnx', 'stages', 'onnx.helper',\n"
        "             'onnxruntime', 'numpy', 'PIL']:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "        results[name] = 'imported'\n"
        "    except ImportError as err:\n"
        "        results[name] = type(err).__name__\n"
        "print(json.dumps(results))\n"
    )
    result = run_blocked(probe, strict=False)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert {name: outcome[name] for name in ("onnxruntime", "numpy", "PIL")} == dict.fromkeys(
        ("onnxruntime", "numpy", "PIL"), "imported"
    )
    blocked = ("tensorflow", "keras", "mlflow", "onnx", "stages", "onnx.helper")
    assert {name: outcome[name] for name in blocked} == dict.fromkeys(
        blocked, "ModuleNotFoundError"
    )
    # Strict mode fails the run even when the code swallows the ImportError.
    swallowed = run_blocked("try:\n    import tensorflow\nexcept ImportError:\n    pass\n")
    assert swallowed.returncode == BLOCKED_IMPORT_EXIT
    assert "tensorflow" in swallowed.stderr


def test_importing_the_package_loads_no_training_dependency() -> None:
    probe = (
        "import json, sys\n"
        "import digits_predict, digits_predict.cli, digits_predict.contract\n"
        f"blocked = {sorted(BLOCKED)!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in blocked)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_console_script_is_installed(model_path: Path, inputs: dict[str, Path]) -> None:
    script = Path(sys.executable).with_name("digits-predict")
    if not script.exists():
        pytest.skip(f"{script} not installed (pip install -e . creates it)")
    result = subprocess.run(
        [str(script), "--model", str(model_path), str(inputs["one.npy"])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _answers(result.stdout) == {str(inputs["one.npy"]): VERTICAL_DIGIT}


def _fresh_shell(command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in bash from the project root, as a new terminal runs it: no venv activated."""
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(
        part for part in os.environ.get("PATH", "").split(os.pathsep)
        if Path(part).resolve() != (PROJECT_ROOT / ".venv" / "bin").resolve()
    ) or "/usr/bin:/bin"  # fmt: skip
    return subprocess.run(
        ["bash", "-c", command],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_readmes_command_works_in_a_fresh_shell(model_path: Path) -> None:
    """The README's digits-predict line, run as written (the model swapped for a test one) in a
    shell that never activated the venv; and what it says of plain ``digits-predict`` holds."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    (line,) = [
        row.strip() for row in readme.splitlines() if row.strip().startswith(".venv/bin/digits-")
    ]
    assert "--model champion/model.onnx" in line
    result = _fresh_shell(line.replace("champion/model.onnx", str(model_path)))
    assert result.returncode == 0, result.stderr
    assert list(_answers(result.stdout)) == ["docs/samples/seven.png"]
    assert "plain `digits-predict` only once the environment is activated" in " ".join(
        readme.split()
    )
    bare = _fresh_shell("digits-predict --help")
    assert bare.returncode == 127 and "command not found" in bare.stderr
    activated = _fresh_shell("source .venv/bin/activate && digits-predict --help")
    assert activated.returncode == 0 and activated.stdout.startswith("usage: digits-predict")
