"""Stage ``export``: the ONNX hand-off, written only once it predicts like the Keras model.

Converts the Keras model with tf2onnx, writes the contract into the ONNX
metadata, checks it with ``onnx.checker``, and compares onnxruntime with Keras
on the whole test set (``handoff.gate``). A model that fails the gate changes
nothing but the run's parity figures. One that passes is handed off in an order
that a failure at any step undoes (``handoff.registration``): a new registry
version, the model, parity report and card swapped into place together, and
last the alias moved to it.
Then the champion rule (``handoff.promotion``) decides whether ``@champion``
moves to the new version too. When the feedback set holds a drawn test part, the rule
weighs it beside the MNIST test set: the exported model's accuracy on it is measured here
with onnxruntime (``drawn_accuracy`` and ``drawn_digest`` tags on the version), and a
champion with no accuracy on that set has its registered model downloaded and measured on
it too. The run's ``test_drawn/*`` metrics are evaluate's, which scores the same ONNX
bytes the same way, so the two agree. Exports on one machine take the registry one at a
time (``store.registry_lock``); exports on several machines against one server settle
the alias afterwards (``promotion.settle``), so that no version on the champion's test data
is better than it (with a drawn set: better on one set and no worse on the other).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kernel.atomic import StagedFiles, json_text
from kernel.cli import CommandError, exit_process, run_command
from kernel.params import ExportParams, load_params, stage_argument_parser
from kernel.signals import deferred_signals
from kernel.timing import note_work_started
from stages.dataset.arrays import load_split, split_file
from stages.dataset.canonical import dataset_digest
from stages.dataset.feedback import load_feedback
from stages.handoff.gate import GatedModel, gate_onnx_model
from stages.handoff.model_card import model_card
from stages.handoff.onnx_runtime import PROVIDERS, onnx_session, run_onnx
from stages.handoff.promotion import RULE, Decision, Standing, decide, settle
from stages.handoff.registration import HANDED_OFF_TAG, after_handoff, register_and_write
from stages.model.keras_io import load_keras_model
from stages.tracking.records import log_parity, log_texts
from stages.tracking.runs import file_sha256, locate_run, reopen_run
from tracking.registry import (
    alias_target,
    all_version_tags,
    set_alias,
    tag_version,
    version_onnx_bytes,
    version_tags,
)
from tracking.store import member_name, registry_lock

# a version's accuracy on a drawn set measured after it was registered: the tag's name ends
# with the set's digest, so one tag carries both and another set's figure never passes for it
DRAWN_ON = "drawn_accuracy."


@dataclass(frozen=True)
class DrawnSet:
    """The feedback set's held-out drawn test part: images, labels and their digest."""

    images: np.ndarray
    labels: np.ndarray
    digest: str

    @classmethod
    def read(cls, feedback: Path) -> DrawnSet | None:
        """The drawn part of the feedback stage's file, or None when it is empty."""
        images, labels = load_feedback(feedback)["drawn"]
        if len(labels) == 0:
            return None
        return cls(images, labels, dataset_digest({"drawn_x": images, "drawn_y": labels}))

    def accuracy(self, model_bytes: bytes) -> float:
        """The ONNX model's accuracy on the set, with onnxruntime as the parity gate runs it."""
        probabilities = run_onnx(onnx_session(model_bytes), self.images)
        return float((probabilities.argmax(axis=1) == self.labels).mean())


@dataclass(frozen=True)
class DrawnFigures:
    """The exported model's accuracy on the drawn set."""

    drawn: DrawnSet
    accuracy: float


@dataclass(frozen=True)
class HandoffFiles:
    onnx_model: Path
    parity: Path
    card: Path


def parity_record(gated: GatedModel, params: ExportParams) -> dict:
    """The parity report as ``parity.json`` holds it: the figures and the runtime that made them."""
    import onnxruntime

    return {
        **gated.report.as_dict(),
        "onnxruntime_version": onnxruntime.__version__,
        "provider": PROVIDERS[0],
        "opset": params.opset,
    }


def hand_off(
    gated: GatedModel,
    example: np.ndarray,
    params: ExportParams,
    files: HandoffFiles,
    drawn: DrawnFigures | None = None,
) -> str:
    """Register, write and alias the gated model: all of it happens, or none. Its version.

    The parity report and card are logged to the run once the hand-off is done.
    """
    parity = parity_record(gated, params)
    card: dict[str, str] = {}

    def write_files(version: str, staged: StagedFiles) -> None:
        card["text"] = model_card(gated.metadata, parity, params, _card_drawn(drawn))
        staged.write_bytes(files.onnx_model, gated.model_bytes)
        staged.write_json(files.parity, parity)
        staged.write_text(files.card, card["text"])

    version = register_and_write(
        gated.model_bytes,
        example,
        params.registered_model_name,
        params.alias,
        standing_tags(gated, drawn),
        write_files,
        stage="export",
    )
    after_handoff(
        "export",
        "the parity report and card are not on the MLflow run",
        lambda: log_texts({files.parity.name: json_text(parity), files.card.name: card["text"]}),
    )
    return version


def _card_drawn(drawn: DrawnFigures | None) -> dict | None:
    if drawn is None:
        return None
    return {
        "accuracy": drawn.accuracy,
        "images": len(drawn.drawn.labels),
        "digest": drawn.drawn.digest,
    }


def standing_tags(gated: GatedModel, drawn: DrawnFigures | None = None) -> dict[str, str]:
    """What the champion rule compares, kept on the registered version: the test accuracy and
    its data's digest, and the drawn set's when there is one."""
    tags = {
        "precision": "fp32",
        "test_accuracy": repr(gated.report.onnx_accuracy),
        "test_data_digest": gated.test_data_digest,
    }
    if drawn is not None:
        tags |= {
            "drawn_accuracy": repr(drawn.accuracy),
            "drawn_digest": drawn.drawn.digest,
            "drawn_images": str(len(drawn.drawn.labels)),
        }
    return tags


def promote(
    version: str, gated: GatedModel, params: ExportParams, drawn: DrawnFigures | None = None
) -> Decision:
    """Apply the champion rule to the newly handed-off version: move ``@champion`` or not;
    then settle the alias against every version (``promotion.settle``)."""
    candidate = Standing(
        version,
        gated.report.onnx_accuracy,
        gated.test_data_digest,
        drawn.accuracy if drawn else None,
        drawn.drawn.digest if drawn else None,
    )
    return promote_standing(
        params.registered_model_name,
        params.champion_alias,
        candidate,
        tolerance=params.promotion_tolerance,
        drawn=drawn.drawn if drawn else None,
    )


def promote_standing(
    name: str,
    champion_alias: str,
    candidate: Standing,
    tolerance: float = 0.0,
    drawn: DrawnSet | None = None,
) -> Decision:
    """The rule and the settling, for a version whose standing is known. With ``drawn`` (the
    candidate's drawn set), a champion that has no accuracy on it is measured on it first."""
    champion = current_champion(name, champion_alias, candidate.drawn_digest)
    if drawn is not None and _to_be_measured(champion, candidate):
        champion = measured_on_drawn(name, champion, drawn)
    decision = decide(candidate, champion, tolerance)
    if decision.promote:
        with deferred_signals():
            set_alias(name, champion_alias, candidate.version)
    settle_champion(name, champion_alias, candidate.drawn_digest)
    return decision


def _to_be_measured(champion: Standing | None, candidate: Standing) -> bool:
    """Whether the rule would weigh the drawn set if only the champion had a figure on it."""
    return (
        champion is not None
        and champion.version != candidate.version
        and champion.test_accuracy is not None
        and champion.data_digest == candidate.data_digest
        and not (champion.on_drawn and champion.drawn_digest == candidate.drawn_digest)
    )


def measured_on_drawn(name: str, champion: Standing, drawn: DrawnSet) -> Standing:
    """The champion's standing with its registered model's accuracy on ``drawn``, recorded
    on its version (``drawn_accuracy.<digest>``); as it was, with a warning, when its model
    cannot be had or run (the MNIST test set alone then decides, and the reason says so)."""
    try:
        accuracy = drawn.accuracy(version_onnx_bytes(name, champion.version))
    except Exception as err:  # a download or onnxruntime failure, of whatever kind: no figure
        message = getattr(err, "message", None) or str(err)
        first = (message.strip().splitlines() or [type(err).__name__])[0]
        print(
            f"export: warning: champion v{champion.version}'s model could not be measured on "
            f"the drawn test set, so the MNIST test set alone decides: {first}",
            file=sys.stderr,
        )
        return champion
    tag_version(name, champion.version, {DRAWN_ON + drawn.digest: repr(accuracy)})
    return replace(champion, drawn_accuracy=accuracy, drawn_digest=drawn.digest)


def settle_champion(
    name: str, champion_alias: str, drawn_digest: str | None = None, rounds: int = 10
) -> None:
    """Move ``@champion`` to a better version on its test data until a read confirms it
    (another machine may move it between our read and our write). With ``drawn_digest``,
    the versions' accuracies on that drawn set count too (``promotion.settle``)."""
    for _ in range(rounds):
        versions = all_version_tags(name)
        current = alias_target(name, champion_alias)
        champion = _standing(current, versions.get(current, {}), drawn_digest) if current else None
        fp32 = [
            _standing(v, t, drawn_digest)
            for v, t in versions.items()
            if t.get("precision", "fp32") == "fp32" and t.get(HANDED_OFF_TAG) == "true"
        ]
        better = settle(champion, fp32)
        if better is None:
            return
        with deferred_signals():
            set_alias(name, champion_alias, better.version)
        if champion.on_drawn:
            how = (
                "on one of the MNIST test and drawn sets and no worse on the other (another "
                "export moved it meanwhile, or promotions within the tolerance left it behind)"
            )
        else:
            how = "on the same test data (another export moved it meanwhile)"
        print(
            f"export: @{champion_alias} settled on v{better.version}, better than "
            f"v{champion.version} {how}",
            file=sys.stderr,
        )


def _standing(version: str, tags: dict[str, str], drawn_digest: str | None = None) -> Standing:
    """A version's standing from its tags; with ``drawn_digest``, its accuracy on that drawn
    set if it has one (else the digest of the drawn set it was measured on, if any)."""
    accuracy = tags.get("test_accuracy")
    standing = Standing(
        version, float(accuracy) if accuracy else None, tags.get("test_data_digest", "")
    )
    if drawn_digest is None:
        return standing
    drawn = tags.get(DRAWN_ON + drawn_digest)
    if drawn is None and tags.get("drawn_digest") == drawn_digest:
        drawn = tags.get("drawn_accuracy")
    if drawn:
        return replace(standing, drawn_accuracy=float(drawn), drawn_digest=drawn_digest)
    return replace(standing, drawn_digest=tags.get("drawn_digest"))


def current_champion(
    name: str, champion_alias: str, drawn_digest: str | None = None
) -> Standing | None:
    current = alias_target(name, champion_alias)
    if current is None:
        return None
    return _standing(current, version_tags(name, current), drawn_digest)


def record_promotion(version: str, decision: Decision, params: ExportParams) -> None:
    """Why the version was promoted or not, as tags on it, after the alias moved (or not)."""
    champion = decision.champion
    candidate = decision.candidate
    drawn = {}
    if candidate.on_drawn:
        champion_drawn = champion.drawn_accuracy if champion and decision.both_sets else None
        drawn = {
            "promotion.sets": "MNIST test and drawn" if decision.both_sets else "MNIST test",
            "promotion.tolerance": repr(decision.tolerance),
            "promotion.drawn_digest": candidate.drawn_digest,
            "promotion.candidate_drawn_accuracy": repr(candidate.drawn_accuracy),
            "promotion.champion_drawn_accuracy": (
                repr(champion_drawn) if champion_drawn is not None else "none"
            ),
        }
    # tags are set one by one (MLflow has no batch call for them): the decision goes last,
    # so a version that carries it carries the whole record
    tag_version(
        params.registered_model_name,
        version,
        {
            "promotion.rule": RULE,
            "promotion.reason": decision.reason,
            "promotion.candidate_accuracy": repr(decision.candidate.test_accuracy),
            "promotion.champion_version": champion.version if champion else "none",
            "promotion.champion_accuracy": repr(champion.test_accuracy) if champion else "none",
            **drawn,
            "promotion.decided_by": member_name(),
            **({"promoted_by": member_name()} if decision.promote else {}),
            "promotion.decision": "promoted" if decision.promote else "not promoted",
        },
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="the trained .keras model")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--run-file", required=True, type=Path)
    parser.add_argument("--onnx-out", required=True, type=Path)
    parser.add_argument("--parity-out", required=True, type=Path)
    parser.add_argument("--card-out", required=True, type=Path)
    # the drawn test set the champion rule weighs when there is one
    parser.add_argument("--feedback", required=True, type=Path, help="the feedback stage's .npz")
    args = parser.parse_args(argv)
    params = load_params(args.params).export
    ref = locate_run(args.run_file)
    x_test, y_test = load_split(split_file(args.data_dir, "test"))
    drawn_set = DrawnSet.read(args.feedback)
    model = load_keras_model(args.model)
    files = HandoffFiles(onnx_model=args.onnx_out, parity=args.parity_out, card=args.card_out)

    with reopen_run(ref) as run:
        tags = run.data.tags
        # digests only: the file's bytes must not name this clone's run, store or commit
        provenance = {
            "model_digest": file_sha256(args.model),
            "data_digest": tags.get("data_digest", "unknown"),
        }
        note_work_started("export")
        gated = gate_onnx_model(model, x_test, y_test, params, provenance)
        report = gated.report
        log_parity(
            {k: v for k, v in report.as_dict().items() if isinstance(v, float)}, report.failures
        )
        if not report.passed:
            raise CommandError(
                "parity gate failed, no ONNX model handed off: " + "; ".join(report.failures)
            )
        drawn = (
            DrawnFigures(drawn_set, drawn_set.accuracy(gated.model_bytes)) if drawn_set else None
        )
        with registry_lock(ref.tracking_uri):
            version = hand_off(gated, x_test[:5], params, files, drawn)
            decision = after_handoff(
                "export",
                f"@{params.champion_alias} was not reconsidered and stays where it was",
                lambda: promote(version, gated, params, drawn),
            )
            if decision is not None:
                after_handoff(
                    "export",
                    f"v{version}'s promotion record is not on it",
                    lambda: record_promotion(version, decision, params),
                )
    drawn_text = (
        f"; drawn test accuracy {drawn.accuracy:.4f} on {len(drawn.drawn.labels)} images"
        if drawn is not None
        else ""
    )
    print(
        f"export: parity passed (max abs diff {report.max_abs_diff:.2e}, agreement "
        f"{report.argmax_agreement:.2%}){drawn_text}; registered "
        f"{params.registered_model_name} v{version} as @{params.alias}",
        file=sys.stderr,
    )
    champion = params.champion_alias
    if decision is None:
        return
    if decision.promote:
        line = f"@{champion} moves to v{version}: {decision.reason}"
    else:
        line = f"@{champion} stays, v{version} is not promoted: {decision.reason}"
    print(f"export: {line}", file=sys.stderr)


if __name__ == "__main__":
    exit_process(run_command("export", main))
