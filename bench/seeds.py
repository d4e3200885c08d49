"""A preset's figures over the seeds it was trained with: the mean ± sd the report shows."""

from __future__ import annotations

import statistics

# the seeds ``make bench`` trains each preset with (``python -m bench --seeds`` changes them)
PRESET_SEEDS = (42, 1, 2)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _sd(values: list[float]) -> float:
    """The sample standard deviation; 0 for a single run."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def preset_over_seeds(overrides: dict, runs: list[dict]) -> dict:
    """One preset's figures from its ``runs`` (one per seed, each with its ``seed``).

    Accuracy and fit time are the mean over the seeds, with the sd and the worst seed beside
    them; a gate passes only if it passed for every seed; the int8 figures are means over
    the seeds whose twin passed, and the methods are listed as chosen."""
    accuracies = [run["test_accuracy"] for run in runs]
    fits = [run["fit_seconds"] for run in runs if run.get("fit_seconds") is not None]
    passed = [run for run in runs if run.get("int8_passed")]
    speedups = [run["int8_speedup_1_thread"] for run in passed if run.get("int8_speedup_1_thread")]
    return {
        "overrides": overrides,
        "seeds": [run["seed"] for run in runs],
        "test_accuracy": _mean(accuracies),
        "test_accuracy_sd": _sd(accuracies),
        "test_accuracy_min": min(accuracies),
        "fit_seconds": _mean(fits),
        "fit_seconds_max": max(fits) if fits else None,
        "epochs_run": max(run["epochs_run"] for run in runs),
        "parity_passed": all(run["parity_passed"] for run in runs),
        "int8_passed": bool(runs) and len(passed) == len(runs),
        "int8_method": ", ".join(dict.fromkeys(str(run["int8_method"]) for run in passed)) or None,
        "int8_accuracy": _mean([run["int8_accuracy"] for run in passed]),
        "int8_agreement": _mean([run["int8_agreement"] for run in passed]),
        "int8_speedup_1_thread": _mean(speedups),
        "runs": runs,
    }
