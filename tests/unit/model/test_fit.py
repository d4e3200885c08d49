"""model.fit: seeded, bit-identical training; early stopping that restores the best epoch."""

from __future__ import annotations

import numpy as np
import pytest

from factories.data import digit_splits
from factories.params import train_params
from stages.model.history import HISTORY_KEYS


@pytest.fixture(scope="module")
def splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return digit_splits()


# --- train_model ---------------------------------------------------------------------------------


def _weights_equal(first: list[np.ndarray], second: list[np.ndarray]) -> bool:
    return len(first) == len(second) and all(
        np.array_equal(a, b) for a, b in zip(first, second, strict=True)
    )


def test_training_is_deterministic(splits) -> None:
    from stages.model.fit import train_model

    params = train_params(dropout=0.2, early_stopping_patience=0)  # dropout and shuffle use RNG
    first = train_model(params, splits["train"], splits["val"], verbose=0)
    again = train_model(params, splits["train"], splits["val"], verbose=0)
    other = train_model(
        params.model_copy(update={"seed": params.seed + 1}),
        splits["train"],
        splits["val"],
        verbose=0,
    )
    assert first.epochs_run == again.epochs_run == params.epochs
    assert _weights_equal(first.model.get_weights(), again.model.get_weights())
    assert first.history == again.history
    assert not _weights_equal(first.model.get_weights(), other.model.get_weights())


class WeightSnapshots:
    """A callback keeping the weights at the end of each epoch."""

    def __new__(cls):
        import keras

        class Snapshots(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.weights: list[list[np.ndarray]] = []

            def on_epoch_end(self, epoch, logs=None):
                self.weights.append(self.model.get_weights())

        return Snapshots()


def test_early_stopping_restores_the_best_weights(splits) -> None:
    from stages.model.fit import train_model

    x_val, y_val = splits["val"]
    misleading = (x_val, (y_val + 1) % 10)  # learning the training digits raises val loss
    params = train_params(epochs=20, early_stopping_patience=1)
    snapshots = WeightSnapshots()
    result = train_model(params, splits["train"], misleading, callbacks=[snapshots], verbose=0)

    val_loss = result.history["val_loss"]
    assert result.epochs_run < params.epochs
    assert result.epochs_run == len(val_loss) == len(snapshots.weights)
    assert result.best_epoch == int(np.argmin(val_loss))
    # stopped after `patience` epochs without improvement on the best
    assert result.epochs_run == result.best_epoch + params.early_stopping_patience + 1
    assert _weights_equal(result.model.get_weights(), snapshots.weights[result.best_epoch])
    if result.best_epoch != result.epochs_run - 1:
        assert not _weights_equal(result.model.get_weights(), snapshots.weights[-1])
    assert all(len(result.history[key]) == result.epochs_run for key in HISTORY_KEYS)


def test_no_early_stopping_runs_every_epoch(splits) -> None:
    from stages.model.fit import train_model

    x_val, y_val = splits["val"]
    params = train_params(epochs=4, early_stopping_patience=0)
    result = train_model(params, splits["train"], (x_val, (y_val + 1) % 10), verbose=0)
    assert result.epochs_run == 4
    # nothing restores the best weights, so the model kept is the last epoch's
    assert result.best_epoch == 3
