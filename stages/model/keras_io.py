"""Saving, loading and running the Keras model file the stages hand to each other."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stages.common.atomic import atomic_path
from stages.common.errors import StageError

if TYPE_CHECKING:
    import keras


def save_keras_model(model: keras.Model, path: str | os.PathLike[str]) -> None:
    """Save atomically: a reader sees the previous model or the whole new one."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def load_keras_model(path: Path) -> keras.Model:
    """Load a ``.keras`` file with Keras's safe mode (no arbitrary code from the file)."""
    if not path.is_file():
        raise StageError(f"{path}: model not found (run the train stage first)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # Keras raises many types for a damaged archive
        first = (str(err).strip().splitlines() or [""])[0]
        raise StageError(
            f"{path}: not a loadable Keras model ({type(err).__name__}: {first[:200]})"
        ) from None


def predict_probabilities(
    model: keras.Model, images: np.ndarray, batch_size: int = 1000
) -> np.ndarray:
    """The model's class probabilities for uint8 or float images, shape (N, 10)."""
    return np.asarray(model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0))
