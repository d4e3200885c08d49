"""Saving, loading and running the Keras model file the stages hand to each other."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kernel.atomic import FIXED_ZIP_TIME, atomic_path
from kernel.cli import CommandError

if TYPE_CHECKING:
    import keras


def save_keras_model(model: keras.Model, path: str | os.PathLike[str]) -> None:
    """Save atomically: a reader sees the previous model or the whole new one."""
    with atomic_path(path, suffix=".keras") as tmp:
        write_keras_model(model, tmp)


def write_keras_model(model: keras.Model, path: str | os.PathLike[str]) -> None:
    """Save as a ``.keras`` file whose bytes depend only on the model.

    Keras stamps the save time into ``metadata.json`` (``date_saved``) and the weights
    member, and numbers shared objects in ``config.json`` by their address in memory, so
    identical weights would give new bytes, and a new DVC hash, in every process. The
    archive is rewritten without the date, with fixed member times, and with the shared
    objects numbered 1, 2, … in order of appearance (the loader only matches them up).
    """
    path = Path(path)
    model.save(path)
    with zipfile.ZipFile(path) as saved:
        members = [(info, saved.read(info.filename)) for info in saved.infolist()]
    with zipfile.ZipFile(path, "w") as canonical:
        for info, data in members:
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata, sort_keys=True).encode()
            elif info.filename == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data))).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            fixed.compress_type = info.compress_type
            canonical.writestr(fixed, data)


def load_keras_model(path: Path) -> keras.Model:
    """Load a ``.keras`` file with Keras's safe mode (no arbitrary code from the file)."""
    if not path.is_file():
        raise CommandError(f"{path}: model not found (run the train stage first)")
    from stages.model.runtime import import_tensorflow

    import_tensorflow()
    import keras

    import stages.model.elastic  # noqa: F401  (registers its layer for the loader)

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # Keras raises many types for a damaged archive
        first = (str(err).strip().splitlines() or [""])[0]
        raise CommandError(
            f"{path}: not a loadable Keras model ({type(err).__name__}: {first[:200]})"
        ) from None


def predict_probabilities(
    model: keras.Model, images: np.ndarray, batch_size: int = 1000
) -> np.ndarray:
    """The model's class probabilities for uint8 or float images, shape (N, 10)."""
    return np.asarray(model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0))


def _renumber_shared_objects(config: object) -> object:
    """``config`` with each distinct ``shared_object_id`` replaced by its order of appearance."""
    numbers: dict[object, int] = {}

    def walk(node: object) -> object:
        if isinstance(node, dict):
            return {
                key: numbers.setdefault(value, len(numbers) + 1)
                if key == "shared_object_id"
                else walk(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(config)
