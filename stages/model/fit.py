"""Fitting the classifier: seeded, deterministic, with early stopping and LR halving as params."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from digits_predict.contract import NUM_CLASSES
from kernel.params import TrainParams
from kernel.signals import deferred_signals
from stages.dataset.arrays import Split
from stages.model.history import HISTORY_KEYS

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class TrainingResult:
    model: keras.Model
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int  # index into history: 0 is the first epoch
    fit_seconds: float

    def summary(self) -> dict[str, float]:
        """The run's final figures: epochs run, the kept epoch and its validation scores."""
        return {
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch + 1,  # counted from 1, as Keras prints them
            "fit_seconds": self.fit_seconds,
            "best_val_loss": self.history["val_loss"][self.best_epoch],
            "best_val_accuracy": self.history["val_accuracy"][self.best_epoch],
        }


def make_deterministic(seed: int) -> None:
    """Same params, data and machine → bit-identical weights."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _schedule_callbacks(params: TrainParams) -> list[keras.callbacks.Callback]:
    """Early stopping (restoring the best epoch's weights) and halving the learning rate on
    a plateau of ``val_loss``, as the params ask."""
    import keras

    found = []
    if params.early_stopping_patience > 0:
        found.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=params.early_stopping_patience, restore_best_weights=True
        ))  # fmt: skip
    if params.reduce_lr_patience > 0:
        found.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=params.reduce_lr_patience
        ))  # fmt: skip
    return found


def train_model(
    params: TrainParams,
    train: Split,
    val: Split,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    sample_weight: np.ndarray | None = None,
) -> TrainingResult:
    """Build and fit the model; with early stopping the best weights are restored.

    ``sample_weight`` weighs each training image (None: all alike, as without it)."""
    from stages.model.runtime import import_tensorflow

    import_tensorflow()
    import keras

    from stages.model.build import build_model

    make_deterministic(params.seed)
    steps_per_epoch = -(-len(train[0]) // params.batch_size)
    model = build_model(params, steps_per_epoch)
    all_callbacks = [*callbacks, *_schedule_callbacks(params)]
    x_train, y_train = train
    x_val, y_val = val
    if params.label_smoothing > 0:  # the smoothing loss takes one-hot targets
        y_train, y_val = (
            keras.utils.to_categorical(y_train, NUM_CLASSES),
            keras.utils.to_categorical(y_val, NUM_CLASSES),
        )
    started = time.perf_counter()
    weighted = {} if sample_weight is None else {"sample_weight": sample_weight}
    # Ctrl-C or SIGTERM asks the fit to stop after its running step call, and interrupts
    # once it has returned: a KeyboardInterrupt raised inside TensorFlow's own calls (the
    # next epoch's dataset iterator being made, say) can leave its C++ state half made,
    # and glibc then aborts the process ("free(): invalid next size"), which never says
    # it was interrupted
    with deferred_signals(on_signal=lambda: setattr(model, "stop_training", True)):
        fit = model.fit(
            x_train.astype(np.float32),
            y_train,
            **weighted,
            batch_size=params.batch_size,
            epochs=params.epochs,
            validation_data=(x_val.astype(np.float32), y_val),
            shuffle=True,
            callbacks=all_callbacks,
            verbose=verbose,
        )
    seconds = time.perf_counter() - started
    history = {key: [float(v) for v in fit.history.get(key, [])] for key in HISTORY_KEYS}
    epochs_run = len(history["loss"])
    # the epoch whose weights the model keeps: the best one only when early stopping restores it
    restores_best = params.early_stopping_patience > 0 and history["val_loss"]
    best_epoch = int(np.argmin(history["val_loss"])) if restores_best else epochs_run - 1
    return TrainingResult(model, history, epochs_run, best_epoch, seconds)
