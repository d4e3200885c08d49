"""``python -m monitor.baseline``: what clean windows score, by the drift report's own code.

Rendered digits (``factories.data``) stand in for MNIST: windows of the same kind as the
training images are flagged in none, the same digits drawn thick, small and in a corner in
every one, and each window's scores are those ``make monitor``'s report gives it. In the
system tier because Evidently (the monitor extra) is.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from factories.data import digit_images, write_prepared
from factories.processes import error_lines, run_module
from kernel.params import load_params
from monitor.baseline import score_windows, window_indices
from monitor.descriptors import DESCRIPTORS, describe
from monitor.drift import PREDICTED, drift_report, reference_frame

ROW = re.compile(r"^(?P<name>\w+) +(?P<median>[\d.]+) +(?P<max>[\d.]+)  (?P<reached>\d+) of ")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Training and test digits as preprocess writes them, and a test set drawn oddly."""
    folder = tmp_path_factory.mktemp("prepared")
    train, test = digit_images(600, seed=0), digit_images(600, seed=1)
    write_prepared(folder, {"train": train, "test": test})
    odd = np.zeros(test[0].shape, dtype=np.float32)
    for index, image in enumerate(test[0]):
        small = ndimage.zoom(ndimage.grey_dilation(image, size=(3, 3)), 0.6, order=1)
        odd[index, 1 : 1 + small.shape[0], 1 : 1 + small.shape[1]] = small
    write_prepared(folder / "odd", {"test": (np.clip(odd, 0, 255).astype(np.uint8), test[1])})
    return folder


def _baseline(prepared, test, *args):
    result = run_module(
        "monitor.baseline",
        "--train", prepared / "train.npz", "--test", test, *args,
        cwd=prepared,
    )  # fmt: skip
    rows = {m["name"]: m for m in map(ROW.match, result.stdout.splitlines()) if m}
    return result, rows


def test_clean_windows_are_flagged_in_none_and_odd_digits_in_every_one(prepared, params_file):
    params = params_file()
    clean, rows = _baseline(prepared, prepared / "test.npz", "--params", params,
                            "--size", "200", "--windows", "3")  # fmt: skip
    assert clean.returncode == 0, clean.stderr
    lines = clean.stdout.splitlines()
    assert lines[0].startswith(
        "monitor.baseline: 3 windows of 200 test digits (drawn at random) against 600 "
        "training images; wasserstein scores, a descriptor drifted at >= 0.25"
    )
    assert set(rows) == {*DESCRIPTORS, "digits"}
    assert all(row["reached"] == "0" for row in rows.values()), clean.stdout
    assert lines[-1] == "flagged as drift: 0 of 3 windows"

    odd, rows = _baseline(prepared, prepared / "odd" / "test.npz", "--params", params,
                          "--size", "200", "--windows", "3")  # fmt: skip
    assert odd.returncode == 0, odd.stderr
    assert odd.stdout.splitlines()[-1] == "flagged as drift: 3 of 3 windows"
    for moved in ("height", "width", "centre_dx", "centre_dy", "stroke_width"):
        assert rows[moved]["reached"] == "3", (moved, odd.stdout)


def test_a_windows_scores_are_the_drift_reports(prepared) -> None:
    params = load_params().monitor
    reference = reference_frame(prepared / "train.npz", params.reference_images, params.seed)
    with np.load(prepared / "test.npz") as data:
        images, labels = data["x"], data["y"]
    (chosen,) = window_indices(len(images), 150, 1, seed=5, in_file_order=False)
    (scores,) = score_windows(images, labels, [chosen], reference, params)

    window = pd.DataFrame(describe(images[chosen]))
    window[PREDICTED] = labels[chosen].astype(np.int64)
    window["probability"], window["margin"] = 0.9, 0.8
    window["time"] = pd.Timestamp("2026-01-01", tz="UTC")
    window["model"], window["version"] = "m", "1"
    _, verdict = drift_report(window, reference, params)
    for name in DESCRIPTORS:
        assert scores[name] == pytest.approx(
            verdict.summary["descriptors"][name]["score"], abs=1e-6
        )
    assert scores[PREDICTED] == pytest.approx(verdict.prediction_distance, abs=1e-6)


def test_windows_the_test_set_cannot_fill_and_missing_data_are_one_line(
    prepared, params_file
) -> None:
    params = params_file()
    full, _ = _baseline(prepared, prepared / "test.npz", "--params", params, "--in-file-order",
                        "--size", "400", "--windows", "2")  # fmt: skip
    assert full.returncode == 1
    assert error_lines(full.stderr) == [
        "monitor.baseline: error: 2 windows of 400 consecutive digits need 800; there are 600: "
        "fewer --windows or a smaller --size"
    ]
    missing, _ = _baseline(prepared, prepared / "nowhere.npz", "--params", params)
    assert missing.returncode == 1
    assert error_lines(missing.stderr) == [
        f"monitor.baseline: error: {prepared / 'nowhere.npz'}: no test digits; run make repro "
        "(or dvc pull)"
    ]
