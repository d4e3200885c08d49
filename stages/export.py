"""Stage ``export``: the ONNX hand-off, written only once it predicts like the Keras model.

Converts the Keras model with tf2onnx, writes the contract into the ONNX
metadata, checks it with ``onnx.checker``, and compares onnxruntime with Keras
on the whole test set (``handoff.gate``). A model that fails the gate changes
nothing but the run's parity figures. One that passes is handed off in an order
that a failure at any step undoes (``handoff.registration``): a new registry
version, the model, parity report and card swapped into place together, and
last the alias moved to it.
A model already registered (same ONNX bytes) keeps its version: the hand-off reuses it.
Then the champion rule (``tracking.champion``) decides whether ``@champion``
moves to the new version too, unless a person pinned it (``tracking.lifecycle``), and
``@int8`` follows ``@champion`` to its int8 twin, or is removed until quantize makes one.
When the feedback set holds a drawn test part, the rule weighs it beside the MNIST test
set: the exported model's accuracy on it is measured here with onnxruntime
(``drawn_accuracy`` and ``drawn_digest`` tags on the version), and a champion with no
accuracy on that set has its registered model downloaded and measured on it too. The run's
``test_drawn/*`` metrics are evaluate's, which scores the same ONNX bytes the same way, so
the two agree. Exports on one machine take the registry one at a time
(``store.registry_lock``); exports on several machines against one server settle the alias
afterwards (``champion.settle``), so that no version on the champion's test data is better
than it (with a drawn set: better on one set and no worse on the other).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernel.atomic import StagedFiles, json_text
from kernel.cli import CommandError, exit_process, run_command
from kernel.params import ExportParams, load_params, stage_argument_parser
from kernel.timing import note_work_started
from stages.dataset.arrays import load_split, split_file
from stages.handoff.drawn_set import DrawnSet
from stages.handoff.gate import GatedModel, gate_onnx_model
from stages.handoff.model_card import model_card
from stages.handoff.onnx_runtime import PROVIDERS
from stages.handoff.parity import ParityReport
from stages.handoff.registration import Registered, after_handoff, register_and_write
from stages.model.keras_io import load_keras_model
from stages.run_record.dvc_lock import file_md5
from stages.run_record.records import log_parity, log_texts, tag_output_md5s
from stages.run_record.runs import file_sha256, locate_run, reopen_run
from tracking import champion
from tracking.champion import Decision, ModelRegistry, Standing
from tracking.lifecycle import Aliases, follow_champion
from tracking.registry import MlflowRegistry
from tracking.store import member_name, registry_lock
from tracking.version_tags import DrawnFigure, VersionTags


@dataclass(frozen=True)
class HandoffFiles:
    onnx_model: Path
    parity: Path
    card: Path


def argument_parser() -> argparse.ArgumentParser:
    parser = stage_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="the trained .keras model")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--run-file", required=True, type=Path)
    parser.add_argument("--onnx-out", required=True, type=Path)
    parser.add_argument("--parity-out", required=True, type=Path)
    parser.add_argument("--card-out", required=True, type=Path)
    # the drawn test set the champion rule weighs when there is one
    parser.add_argument("--feedback", required=True, type=Path, help="the feedback stage's .npz")
    return parser


def log_parity_or_fail(report: ParityReport) -> None:
    """The gate's figures on the run; a model that failed it stops the stage here."""
    log_parity(report.as_dict(), report.failures)
    if not report.passed:
        raise CommandError(
            "parity gate failed, no ONNX model handed off: " + "; ".join(report.failures)
        )


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
    drawn: DrawnFigure | None = None,
) -> Registered:
    """Register, write and alias the gated model: all of it happens, or none. Its version
    (an earlier one when the same model was registered before).

    The parity report and card are logged to the run once the hand-off is done.
    """
    parity = parity_record(gated, params)
    card: dict[str, str] = {}

    def write_files(version: str, staged: StagedFiles) -> None:
        card["text"] = model_card(gated.metadata, parity, params, drawn)
        staged.write_bytes(files.onnx_model, gated.model_bytes)
        staged.write_json(files.parity, parity)
        staged.write_text(files.card, card["text"])

    registered = register_and_write(
        gated.model_bytes,
        example,
        params.registered_model_name,
        params.alias,
        registered_tags(gated, drawn),
        write_files,
        stage="export",
    )
    after_handoff(
        "export",
        "the parity report and card are not on the MLflow run",
        lambda: log_texts({files.parity.name: json_text(parity), files.card.name: card["text"]}),
    )
    after_handoff(
        "export",
        "the md5 of its outputs is not on the MLflow run",
        lambda: tag_output_md5s({path: file_md5(path) for path in vars(files).values()}),
    )
    return registered


def registered_tags(gated: GatedModel, drawn: DrawnFigure | None = None) -> VersionTags:
    """What the champion rule compares, kept on the registered version: the test accuracy and
    its data's digest, and the drawn set's when there is one."""
    return VersionTags(
        test_accuracy=gated.report.onnx_accuracy,
        test_data_digest=gated.test_data_digest,
        drawn=drawn,
    )


def candidate_standing(version: str, gated: GatedModel, drawn: DrawnFigure | None) -> Standing:
    return Standing(
        version,
        gated.report.onnx_accuracy,
        gated.test_data_digest,
        drawn.accuracy if drawn else None,
        drawn.digest if drawn else None,
    )


def choose_champion(
    registry: ModelRegistry,
    candidate: Standing,
    params: ExportParams,
    drawn_set: DrawnSet | None = None,
) -> Decision | None:
    """Apply the champion rule to the handed-off candidate and record the decision on it.
    The model is in place by now: a registry failure warns, and None says no rule decided."""
    decision = after_handoff(
        "export",
        f"@{params.champion_alias} was not reconsidered and stays where it was",
        lambda: champion.promote(
            registry,
            candidate,
            params.champion_alias,
            tolerance=params.promotion_tolerance,
            drawn=drawn_set,
            program="export",
            by=member_name(),
        ),
    )
    if decision is not None:
        after_handoff(
            "export",
            f"v{candidate.version}'s promotion record is not on it",
            lambda: champion.record_decision(registry, candidate.version, decision, member_name()),
        )
    return decision


def handoff_line(
    gated: GatedModel, params: ExportParams, registered: Registered, drawn: DrawnFigure | None
) -> str:
    report = gated.report
    drawn_text = (
        f"; drawn test accuracy {drawn.accuracy:.4f} on {drawn.images} images" if drawn else ""
    )
    digest = hashlib.sha256(gated.model_bytes).hexdigest()
    return (
        f"export: parity passed (max abs diff {report.max_abs_diff:.2e}, agreement "
        f"{report.argmax_agreement:.2%}){drawn_text}; "
        + registered.said(params.registered_model_name, params.alias, digest)
    )


def decision_line(alias: str, version: str, decision: Decision) -> str:
    if decision.pinned is not None:
        verdict = "would move it to" if decision.promote else "would not move it to"
        return (
            f"export: @{alias} stays, {decision.pinned.said()}; the rule {verdict} "
            f"v{version}: {decision.reason}"
        )
    if decision.promote:
        return f"export: @{alias} moves to v{version}: {decision.reason}"
    return f"export: @{alias} stays, v{version} is not promoted: {decision.reason}"


def main(argv: Sequence[str] | None = None) -> None:
    args = argument_parser().parse_args(argv)
    all_params = load_params(args.params)
    params = all_params.export
    aliases = Aliases(params.champion_alias, all_params.quantize.alias)
    ref = locate_run(args.run_file)
    x_test, y_test = load_split(split_file(args.data_dir, "test"))
    drawn_set = DrawnSet.read(args.feedback)
    model = load_keras_model(args.model)
    files = HandoffFiles(onnx_model=args.onnx_out, parity=args.parity_out, card=args.card_out)
    registry = MlflowRegistry(params.registered_model_name)

    with reopen_run(ref) as run:
        # digests only: the file's bytes must not name this clone's run, store or commit
        provenance = {
            "model_digest": file_sha256(args.model),
            "data_digest": run.data.tags.get("data_digest", "unknown"),
        }
        note_work_started("export")
        gated = gate_onnx_model(model, x_test, y_test, params, provenance)
        log_parity_or_fail(gated.report)
        drawn = drawn_set.figure(gated.model_bytes) if drawn_set else None
        with registry_lock(ref.tracking_uri):
            registered = hand_off(gated, x_test[:5], params, files, drawn)
            version = registered.version
            # a reused version had the rule's decision when it was registered
            decision = (
                None
                if registered.reused
                else choose_champion(
                    registry, candidate_standing(version, gated, drawn), params, drawn_set
                )
            )
            followed = after_handoff(
                "export",
                f"@{aliases.int8} was not checked against @{aliases.champion}",
                lambda: follow_champion(registry, aliases, program="export"),
            )
    print(handoff_line(gated, params, registered, drawn), file=sys.stderr)
    if decision is not None:
        print(decision_line(params.champion_alias, version, decision), file=sys.stderr)
    if followed is not None:
        print(followed, file=sys.stderr)


if __name__ == "__main__":
    exit_process(run_command("export", main))
