"""The per-epoch training history as CSV: written by train (a DVC plot), read by evaluate."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from kernel.cli import CommandError

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


def history_csv(history: dict[str, list[float]]) -> str:
    """One row per epoch, counted from 1 as Keras prints them, with the four curves."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["epoch", *HISTORY_KEYS])
    for epoch in range(len(history["loss"])):
        writer.writerow([epoch + 1, *(f"{history[key][epoch]:.6f}" for key in HISTORY_KEYS)])
    return out.getvalue()


def read_history(path: str | Path) -> dict[str, list[float]]:
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return {key: [float(row[key]) for row in rows] for key in HISTORY_KEYS}
    except FileNotFoundError:
        raise CommandError(f"{path}: history not found (run the train stage first)") from None
    except (KeyError, ValueError, TypeError) as err:
        raise CommandError(
            f"{path}: not a training history CSV ({type(err).__name__}: {err}); "
            f"expected columns epoch,{','.join(HISTORY_KEYS)}"
        ) from None
