"""A stage's usage error, as a user meets it: ``python -m stages.<name>`` with a flag it does
not take. One line naming the flag and where the knob lives, exit status 2 (argparse's), and
the program named as typed, not as the file (``train.py``)."""

from __future__ import annotations

import pytest

from factories.processes import error_lines, run_module
from stages import preprocess

EPOCHS_HINT = (
    "train: error: unrecognized arguments: --epochs 5; train.epochs is a param, not a flag: "
    "set it in params.yaml, or try a value with dvc exp run -S train.epochs=5 "
    "(python -m stages.train --help lists its arguments)"
)


@pytest.mark.parametrize(
    ("module", "args", "line"),
    [
        # the required paths are missing too: argparse alone would name only those
        ("stages.train", ["--epochs", "5"], EPOCHS_HINT),
        ("stages.train", ["--epochs=5"], EPOCHS_HINT.replace("--epochs 5;", "--epochs=5;")),
        (
            "stages.preprocess",
            ["--raw", "raw.npz", "--val-size", "100"],
            "preprocess: error: unrecognized arguments: --val-size 100; preprocess.val_size is "
            "a param, not a flag: set it in params.yaml, or try a value with dvc exp run -S "
            "preprocess.val_size=100 (python -m stages.preprocess --help lists its arguments)",
        ),
        (
            "stages.fetch",
            ["--out", "raw.npz", "--mirror", "x"],
            "fetch: error: unrecognized arguments: --mirror x; the stage's params are "
            "params.yaml's fetch section, not flags: dvc exp run -S fetch.KEY=VALUE tries a "
            "value (python -m stages.fetch --help lists its arguments)",
        ),
        (
            "stages.fetch",
            [],
            "fetch: error: the following arguments are required: --out; dvc.yaml gives them: "
            "run the stage with dvc repro fetch (python -m stages.fetch --help lists its "
            "arguments)",
        ),
    ],
    ids=["train-flag-and-value", "train-flag=value", "preprocess", "fetch-unknown", "fetch-none"],
)
def test_a_usage_error_is_one_line_naming_the_flag_and_exits_2(
    tmp_path, module, args, line
) -> None:
    result = run_module(module, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert error_lines(result.stderr) == [line]
    assert result.stdout == ""
    assert not list(tmp_path.iterdir()), "a usage error writes nothing"


def test_the_usage_names_the_module_as_typed(tmp_path) -> None:
    result = run_module("stages.fetch", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # --out stays shown as required (not in brackets)
    assert result.stdout.startswith(
        "usage: python -m stages.fetch [-h] [--params PARAMS] --out OUT"
    )


def test_a_stage_main_called_in_process_names_its_stage(capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        preprocess.main(["--raw", "raw.npz", "--out-dir", "out", "--report", "r.json", "--seed=1"])
    assert stopped.value.code == 2
    assert error_lines(capsys.readouterr().err) == [
        "preprocess: error: unrecognized arguments: --seed=1; preprocess.seed is a param, not a "
        "flag: set it in params.yaml, or try a value with dvc exp run -S preprocess.seed=1 "
        "(python -m stages.preprocess --help lists its arguments)"
    ]
