"""The .keras file: same weights give the same bytes; it loads safely, or fails in one line."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kernel.cli import CommandError
from stages.model.keras_io import load_keras_model, save_keras_model


@pytest.fixture(scope="module")
def model():
    from stages.model.runtime import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])


def test_saving_twice_gives_the_same_bytes(model, tmp_path: Path) -> None:
    save_keras_model(model, tmp_path / "first.keras")
    time.sleep(1.1)  # Keras stamps the second; the archive would differ without the rewrite
    save_keras_model(model, tmp_path / "second.keras")
    assert (tmp_path / "first.keras").read_bytes() == (tmp_path / "second.keras").read_bytes()
    with zipfile.ZipFile(tmp_path / "first.keras") as archive:
        metadata = json.loads(archive.read("metadata.json"))
        times = {info.date_time for info in archive.infolist()}
    assert "date_saved" not in metadata and metadata["keras_version"]
    assert times == {(1980, 1, 1, 0, 0, 0)}


def test_shared_objects_are_numbered_by_appearance_not_by_address(tmp_path: Path) -> None:
    """Keras numbers them by id(): another process would write other numbers."""
    from factories.params import train_params
    from stages.model.build import build_model

    save_keras_model(build_model(train_params(batch_norm=True)), tmp_path / "model.keras")
    with zipfile.ZipFile(tmp_path / "model.keras") as archive:
        text = archive.read("config.json").decode()
    ids = [int(part.split(",")[0].split("}")[0]) for part in text.split('"shared_object_id": ')[1:]]
    assert ids, "the model has shared objects (its dtype policy)"
    assert sorted(set(ids)) == list(range(1, len(set(ids)) + 1)), ids
    loaded = load_keras_model(tmp_path / "model.keras")
    assert loaded.count_params() > 0


def test_the_saved_model_loads_and_predicts_alike(model, tmp_path: Path) -> None:
    save_keras_model(model, tmp_path / "model.keras")
    loaded = load_keras_model(tmp_path / "model.keras")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_damaged_file_is_one_clear_error(model, tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    save_keras_model(model, path)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CommandError, match=r"model\.keras: not a loadable Keras model") as caught:
        load_keras_model(path)
    assert "\n" not in str(caught.value)
