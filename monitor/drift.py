"""Drift of a window of logged answers from the training data, measured by Evidently.

The reference is ``reference_images`` training images drawn with a seed: their descriptors,
and their labels standing for the predicted digits (a model as accurate as the pipeline's
predicts about the labels' distribution). Evidently scores each descriptor with
``drift_method`` (a distance: 0 is no change) and the predicted digits with the
Jensen-Shannon distance; the decision against ``params.yaml``'s thresholds is ours, stated
in ``Verdict``, so that the report, the JSON summary and the exit status agree.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kernel.cli import CommandError
from kernel.params import MonitorParams
from monitor.descriptors import DESCRIPTORS, describe

if TYPE_CHECKING:
    import pandas as pd

PREDICTED = "digit"
# below this probability an answer counts as unsure in the summary
UNSURE_BELOW = 0.5


def reference_frame(train_file: Path, size: int, seed: int) -> pd.DataFrame:
    """Descriptors of ``size`` training images drawn with ``seed``, their labels as digits."""
    import pandas as pd

    try:
        with np.load(train_file) as data:
            images, labels = data["x"], data["y"]
    except FileNotFoundError:
        raise CommandError(
            f"{train_file}: no training data to compare with; run make repro (or dvc pull)"
        ) from None
    except (OSError, ValueError, KeyError) as err:
        raise CommandError(f"{train_file}: not the prepared training set ({err})") from None
    chosen = np.sort(np.random.default_rng(seed).permutation(len(images))[:size])
    frame = pd.DataFrame(describe(images[chosen]))
    frame[PREDICTED] = labels[chosen].astype(np.int64)
    return frame


@dataclass(frozen=True)
class Verdict:
    """What the window's scores mean under the thresholds; ``summary`` is its JSON form."""

    drifted: tuple[str, ...]  # descriptors whose score reached drift_threshold
    drifted_share: float
    prediction_distance: float
    summary: dict[str, Any]

    @property
    def drift(self) -> bool:
        return bool(self.summary["drift"])

    def line(self) -> str:
        """The finding in one line, naming the descriptors that moved and by how much."""
        scores = self.summary["descriptors"]
        parts = []
        if self.summary["reasons"]["descriptors"]:
            named = ", ".join(f"{name} {scores[name]['score']:.2f}" for name in self.drifted)
            parts.append(f"{len(self.drifted)} of {len(DESCRIPTORS)} descriptors drifted ({named})")
        if self.summary["reasons"]["predictions"]:
            parts.append(
                f"predicted digits moved from the training labels' (distance "
                f"{self.prediction_distance:.2f})"
            )
        return "; ".join(parts) if parts else "no drift"


def drift_report(
    window: pd.DataFrame, reference: pd.DataFrame, params: MonitorParams
) -> tuple[Any, Verdict]:
    """Evidently's report of ``window`` against ``reference``, and our verdict on it."""
    snapshot, scores = drift_scores(window, reference, params)
    return snapshot, _verdict(window, reference, scores, params)


def drift_scores(
    window: pd.DataFrame, reference: pd.DataFrame, params: MonitorParams
) -> tuple[Any, dict[str, float]]:
    """Evidently's report of the descriptors and predicted digits of ``window`` against
    ``reference``, and its score for each of those columns."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = [*DESCRIPTORS, PREDICTED]
    definition = DataDefinition(
        numerical_columns=list(DESCRIPTORS), categorical_columns=[PREDICTED]
    )
    current = window[columns].astype({PREDICTED: np.int64})
    preset = DataDriftPreset(
        columns=columns,
        num_method=params.drift_method,
        num_threshold=params.drift_threshold,
        cat_method="jensenshannon",
        cat_threshold=params.max_prediction_distance,
        drift_share=params.max_drifted_share,
    )
    # a descriptor that is the same for every image (one stroke each, say) makes Evidently's
    # correlations divide by zero: warnings about its arithmetic, not about the data
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        snapshot = Report([preset]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference[columns], data_definition=definition),
        )
    scores = _column_scores(snapshot.dict())
    missing = [name for name in columns if name not in scores]
    if missing:
        raise CommandError(f"Evidently's report has no drift score for {', '.join(missing)}")
    return snapshot, scores


def judge(scores: dict[str, float], params: MonitorParams) -> tuple[tuple[str, ...], bool, bool]:
    """The descriptors whose score reached ``drift_threshold``; whether they are enough to flag
    drift (more than ``max_drifted_share`` of them); whether the predicted digits flag it."""
    drifted = tuple(name for name in DESCRIPTORS if scores[name] >= params.drift_threshold)
    by_descriptors = len(drifted) / len(DESCRIPTORS) > params.max_drifted_share
    return drifted, by_descriptors, scores[PREDICTED] > params.max_prediction_distance


def _column_scores(report: dict[str, Any]) -> dict[str, float]:
    return {
        metric["config"]["column"]: float(metric["value"])
        for metric in report["metrics"]
        if metric["config"].get("type", "").endswith(":ValueDrift")
    }


def _verdict(
    window: pd.DataFrame, reference: pd.DataFrame, scores: dict[str, float], params: MonitorParams
) -> Verdict:
    drifted, by_descriptors, by_predictions = judge(scores, params)
    share = len(drifted) / len(DESCRIPTORS)
    distance = scores[PREDICTED]
    summary = {
        "window": {
            "answers": len(window),
            "first": window["time"].min().isoformat(),
            "last": window["time"].max().isoformat(),
            "models": _models(window),
        },
        "reference": {"training_images": len(reference), "seed": params.seed},
        "descriptors": {
            name: {
                "score": round(scores[name], 6),
                "drifted": name in drifted,
                "window_mean": round(float(window[name].mean()), 6),
                "reference_mean": round(float(reference[name].mean()), 6),
            }
            for name in DESCRIPTORS
        },
        "drifted_share": round(share, 6),
        "prediction_distance": round(distance, 6),
        "predicted_digits": {
            "window": _shares(window[PREDICTED]),
            "reference": _shares(reference[PREDICTED]),
        },
        "confidence": {
            "mean_probability": round(float(window["probability"].mean()), 6),
            "mean_margin": round(float(window["margin"].mean()), 6),
            "unsure_share": round(float((window["probability"] < UNSURE_BELOW).mean()), 6),
        },
        "thresholds": {
            "drift_method": params.drift_method,
            "drift_threshold": params.drift_threshold,
            "max_drifted_share": params.max_drifted_share,
            "max_prediction_distance": params.max_prediction_distance,
        },
        "reasons": {"descriptors": by_descriptors, "predictions": by_predictions},
        "drift": by_descriptors or by_predictions,
    }
    return Verdict(drifted, share, distance, summary)


def _models(window: pd.DataFrame) -> dict[str, int]:
    """Answers per model that gave them, as ``name vVERSION (@alias)``."""
    aliases = window["alias"] if "alias" in window else [None] * len(window)
    names = [
        f"{model} v{version}" + (f" (@{alias})" if isinstance(alias, str) and alias else "")
        for model, version, alias in zip(window["model"], window["version"], aliases, strict=True)
    ]
    unique, counts = np.unique(np.asarray(names, dtype=str), return_counts=True)
    return {name: int(count) for name, count in zip(unique, counts, strict=True)}


def _shares(digits: pd.Series) -> dict[str, float]:
    counts = np.bincount(digits.astype(np.int64), minlength=10)[:10]
    return {str(d): round(float(c) / max(len(digits), 1), 6) for d, c in enumerate(counts)}
