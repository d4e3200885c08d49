"""Saving, loading and running the Keras model file the stages hand to each other."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stages.atomic import atomic_path
from stages.errors import StageError


def save_keras_model(model, path: str | os.PathLike[str]) -> None:  # noqa: ANN001
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def load_keras_model(path: Path):  # noqa: ANN201
    """Load a ``.keras`` file with Keras's safe mode (no arbitrary code from the file)."""
    if not path.is_file():
        raise StageError(f"{path}: model not found (run the train stage first)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # Keras raises many types for a damaged archive
        first = (str(err).strip().splitlines() or [""])[0]
        raise StageError(f"{path}: not a loadable Keras model ({type(err).__name__}: "
                         f"{first[:200]})") from None


def predict_probabilities(model, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:  # noqa: ANN001
    return np.asarray(model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0))
