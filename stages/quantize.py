"""Stage ``quantize``: an int8 model of the handed-off ONNX model, written only if it keeps up.

Quantizes ``model.onnx`` with onnxruntime (``handoff.quantization``: dynamic for an MLP,
static QDQ per channel, calibrated on training images, for a CNN) and compares the int8
model with the fp32 one on the whole test set (``handoff.int8_gate``). The figures go to
the training run (``test_int8/*``, tag ``int8``) and to ``reports/int8.json``. A model
that fails the gate is not written, the fp32 hand-off is untouched and the run stays
FINISHED (its fp32 model is good); the stage then fails with the figures. One that passes
is handed off as export hands off (``handoff.registration``): a version of the same
registered model (or the one that holds these bytes already), tagged ``precision=int8``
with the fp32 version it came from, and its files. ``@int8`` then follows ``@champion``
(``tracking.lifecycle``): it names this model only when its fp32 version is the champion,
so whoever deploys ``@int8`` gets the twin of the model the rule (or a person) chose.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from kernel.atomic import StagedFiles, json_text
from kernel.cli import CommandError, exit_process, run_command
from kernel.params import load_params, stage_argument_parser
from kernel.timing import note_work_started
from stages.dataset.arrays import load_split, split_file
from stages.dataset.canonical import dataset_digest
from stages.handoff.handed_off import load_handed_off_model
from stages.handoff.int8_gate import GatedInt8Model, gate_int8_model
from stages.handoff.registration import Registered, after_handoff, register_and_write
from stages.run_record.dvc_lock import file_md5
from stages.run_record.records import log_int8, log_texts, tag_output_md5s
from stages.run_record.runs import RunRef, locate_run, reopen_run
from tracking.lifecycle import Aliases, follow_champion
from tracking.registry import MlflowRegistry, versions_from_run
from tracking.store import registry_lock
from tracking.version_tags import FP32, VersionTags


def int8_record(gated: GatedInt8Model) -> dict:
    """``int8.json``: the gate's figures and the runtime that measured them."""
    import onnxruntime

    return {**gated.report.as_dict(), "onnxruntime_version": onnxruntime.__version__}


def int8_version_tags(
    gated: GatedInt8Model, fp32_version: str | None, test_data_digest: str
) -> VersionTags:
    """The int8 version's record; ``test_data_digest`` is of the test split, as export's is."""
    origin = replace(gated.tags.int8, fp32_version=fp32_version or "unknown")
    return replace(gated.tags, int8=origin, test_data_digest=test_data_digest)


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--onnx-model", required=True, type=Path, help="the fp32 ONNX model")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--run-file", required=True, type=Path)
    parser.add_argument("--int8-out", required=True, type=Path)
    parser.add_argument("--report-out", required=True, type=Path)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    quantize, name = params.quantize, params.export.registered_model_name
    aliases = Aliases(params.export.champion_alias, quantize.alias)
    ref = locate_run(args.run_file)
    fp32 = load_handed_off_model(args.onnx_model)
    fp32_bytes, metadata = fp32.model_bytes, fp32.metadata
    x_train, _ = load_split(split_file(args.data_dir, "train"))
    x_test, y_test = load_split(split_file(args.data_dir, "test"))

    # The run holds a handed-off fp32 model: a failed int8 gate is recorded on it (tag and
    # figures) but does not mark it FAILED; the stage fails once the run is closed.
    with reopen_run(ref):
        note_work_started("quantize")
        gated = gate_int8_model(fp32_bytes, metadata, x_train, x_test, y_test, quantize)
        report = gated.report
        log_int8(report.figures(), report.failures)
        if report.passed:
            registered, followed = hand_off_int8(gated, args, ref, name, aliases, x_test, y_test)
    if not report.passed:
        raise CommandError(
            "int8 gate failed, no int8 model written (the fp32 model stands): "
            + "; ".join(report.failures)
        )
    print(
        f"quantize: int8 gate passed ({report.method}: {report.size_ratio:.1f}x smaller, test "
        f"accuracy {report.fp32_accuracy:.2%} -> {report.int8_accuracy:.2%}, agreement "
        f"{report.argmax_agreement:.2%}, max abs diff {report.max_abs_diff:.3f}); "
        + registered.said(name, None, hashlib.sha256(gated.model_bytes).hexdigest()),
        file=sys.stderr,
    )
    if followed is not None:
        print(followed, file=sys.stderr)


def hand_off_int8(
    gated: GatedInt8Model,
    args: argparse.Namespace,
    ref: RunRef,
    name: str,
    aliases: Aliases,
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> tuple[Registered, str | None]:
    """Register and write the int8 model (all or nothing), log its report, and let
    ``@int8`` follow ``@champion``; the version and the line that says where @int8 is."""
    record = int8_record(gated)

    def write_files(version: str, staged: StagedFiles) -> None:
        staged.write_bytes(args.int8_out, gated.model_bytes)
        staged.write_json(args.report_out, record)

    digest = dataset_digest({"x_test": x_test, "y_test": y_test})
    with registry_lock(ref.tracking_uri):
        fp32_versions = versions_from_run(name, ref.run_id, precision=FP32)
        registered = register_and_write(
            gated.model_bytes,
            x_test[:5],
            name,
            None,
            int8_version_tags(gated, fp32_versions[-1] if fp32_versions else None, digest),
            write_files,
            stage="quantize",
            artifact_name="onnx_int8_model",
        )
        followed = after_handoff(
            "quantize",
            f"@{aliases.int8} was not checked against @{aliases.champion}",
            lambda: follow_champion(MlflowRegistry(name), aliases, program="quantize"),
        )
    after_handoff(
        "quantize",
        f"{args.report_out.name} is not on the MLflow run",
        lambda: log_texts({args.report_out.name: json_text(record)}),
    )
    after_handoff(
        "quantize",
        "the md5 of its outputs is not on the MLflow run",
        lambda: tag_output_md5s({p: file_md5(p) for p in (args.int8_out, args.report_out)}),
    )
    return registered, followed


if __name__ == "__main__":
    exit_process(run_command("quantize", main))
