"""Params files for tests: the repository's params.yaml with some keys replaced."""

from __future__ import annotations

from pathlib import Path

import yaml

from factories.data import SPLIT_SIZES
from kernel.params import TrainParams, parse_params
from kernel.paths import PROJECT_ROOT

# Small and quick, yet enough to learn the tiny digits of factories.data.
TINY_TRAIN = {
    "hidden_units": [32],
    "epochs": 4,
    "batch_size": 32,
    "learning_rate": 0.01,
    "dropout": 0.0,
    "early_stopping_patience": 2,
    "experiment_name": "tiny-tests",
}
TINY_EXPORT = {"registered_model_name": "tiny-digits", "alias": "candidate"}


def params_dict(**sections: dict) -> dict:
    """The repository's params.yaml with the given keys of each section replaced."""
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    for section, values in sections.items():
        raw[section].update(values)
    return raw


def write_params(path: Path, **sections: dict) -> Path:
    path.write_text(yaml.safe_dump(params_dict(**sections), sort_keys=False), encoding="utf-8")
    return path


def tiny_params_file(path: Path) -> Path:
    """Params for the tiny prepared data: a small model, a few epochs, its own registry name."""
    return write_params(
        path, preprocess={"val_size": SPLIT_SIZES["val"]}, train=TINY_TRAIN, export=TINY_EXPORT
    )


def train_params(**update: object) -> TrainParams:
    """The real params.yaml's train section made tiny, with ``update`` on top; validated."""
    return parse_params(params_dict(train={**TINY_TRAIN, "epochs": 2, **update})).train
