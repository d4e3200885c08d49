"""Stage ``export``: the ONNX hand-off, written only once it predicts like the Keras model.

Converts the Keras model with tf2onnx, writes the contract into the ONNX
metadata, checks it with ``onnx.checker``, and compares onnxruntime with Keras
on the whole test set (``handoff.gate``). A model that fails the gate changes
nothing but the run's parity figures. One that passes is handed off in an order
that a failure at any step undoes (``handoff.registration``): a new registry
version, the model, parity report and card swapped into place together, and
last the alias moved to it.
Then the champion rule (``handoff.promotion``) decides whether ``@champion``
moves to the new version too. Exports on one machine take the registry one at a
time (``store.registry_lock``); exports on several machines against one server settle
the alias afterwards (``promotion.settle``), so the best version ends up champion.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernel.atomic import StagedFiles, json_text
from kernel.cli import CommandError, exit_process, run_command
from kernel.params import ExportParams, load_params, stage_argument_parser
from kernel.signals import deferred_signals
from kernel.timing import note_work_started
from stages.dataset.arrays import load_split, split_file
from stages.handoff.gate import GatedModel, gate_onnx_model
from stages.handoff.model_card import model_card
from stages.handoff.onnx_runtime import PROVIDERS
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
    version_tags,
)
from tracking.store import member_name, registry_lock


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
    gated: GatedModel, example: np.ndarray, params: ExportParams, files: HandoffFiles
) -> str:
    """Register, write and alias the gated model: all of it happens, or none. Its version.

    The parity report and card are logged to the run once the hand-off is done.
    """
    parity = parity_record(gated, params)
    card: dict[str, str] = {}

    def write_files(version: str, staged: StagedFiles) -> None:
        card["text"] = model_card(gated.metadata, parity, params)
        staged.write_bytes(files.onnx_model, gated.model_bytes)
        staged.write_json(files.parity, parity)
        staged.write_text(files.card, card["text"])

    version = register_and_write(
        gated.model_bytes,
        example,
        params.registered_model_name,
        params.alias,
        standing_tags(gated),
        write_files,
        stage="export",
    )
    after_handoff(
        "export",
        "the parity report and card are not on the MLflow run",
        lambda: log_texts({files.parity.name: json_text(parity), files.card.name: card["text"]}),
    )
    return version


def standing_tags(gated: GatedModel) -> dict[str, str]:
    """What the champion rule compares, kept on the registered version."""
    return {
        "precision": "fp32",
        "test_accuracy": repr(gated.report.onnx_accuracy),
        "test_data_digest": gated.test_data_digest,
    }


def promote(version: str, gated: GatedModel, params: ExportParams) -> Decision:
    """Apply the champion rule to the newly handed-off version: move ``@champion`` or not;
    then settle the alias against every version (``promotion.settle``)."""
    candidate = Standing(version, gated.report.onnx_accuracy, gated.test_data_digest)
    return promote_standing(params.registered_model_name, params.champion_alias, candidate)


def promote_standing(name: str, champion_alias: str, candidate: Standing) -> Decision:
    """The rule and the settling, for a version whose standing is known."""
    decision = decide(candidate, current_champion(name, champion_alias))
    if decision.promote:
        with deferred_signals():
            set_alias(name, champion_alias, candidate.version)
    settle_champion(name, champion_alias)
    return decision


def settle_champion(name: str, champion_alias: str, rounds: int = 10) -> None:
    """Move ``@champion`` to the best version on its test data until a read confirms it
    (another machine may move it between our read and our write)."""
    for _ in range(rounds):
        versions = all_version_tags(name)
        current = alias_target(name, champion_alias)
        champion = _standing(current, versions.get(current, {})) if current else None
        fp32 = [
            _standing(v, t)
            for v, t in versions.items()
            if t.get("precision", "fp32") == "fp32" and t.get(HANDED_OFF_TAG) == "true"
        ]
        better = settle(champion, fp32)
        if better is None:
            return
        with deferred_signals():
            set_alias(name, champion_alias, better.version)
        print(
            f"export: @{champion_alias} settled on v{better.version}, better than "
            f"v{champion.version} on the same test data (another export moved it meanwhile)",
            file=sys.stderr,
        )


def _standing(version: str, tags: dict[str, str]) -> Standing:
    accuracy = tags.get("test_accuracy")
    return Standing(
        version, float(accuracy) if accuracy else None, tags.get("test_data_digest", "")
    )


def current_champion(name: str, champion_alias: str) -> Standing | None:
    current = alias_target(name, champion_alias)
    if current is None:
        return None
    return _standing(current, version_tags(name, current))


def record_promotion(version: str, decision: Decision, params: ExportParams) -> None:
    """Why the version was promoted or not, as tags on it, after the alias moved (or not)."""
    champion = decision.champion
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
    # the drawn test set the champion rule weighs when there is one (not read yet)
    parser.add_argument("--feedback", required=True, type=Path, help="the feedback stage's .npz")
    args = parser.parse_args(argv)
    params = load_params(args.params).export
    ref = locate_run(args.run_file)
    x_test, y_test = load_split(split_file(args.data_dir, "test"))
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
        with registry_lock(ref.tracking_uri):
            version = hand_off(gated, x_test[:5], params, files)
            decision = after_handoff(
                "export",
                f"@{params.champion_alias} was not reconsidered and stays where it was",
                lambda: promote(version, gated, params),
            )
            if decision is not None:
                after_handoff(
                    "export",
                    f"v{version}'s promotion record is not on it",
                    lambda: record_promotion(version, decision, params),
                )
    print(
        f"export: parity passed (max abs diff {report.max_abs_diff:.2e}, agreement "
        f"{report.argmax_agreement:.2%}); registered {params.registered_model_name} "
        f"v{version} as @{params.alias}",
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
