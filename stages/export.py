"""Stage ``export``: the ONNX hand-off, written only once it predicts like the Keras model.

Converts the Keras model with tf2onnx, writes the contract into the ONNX
metadata, checks it with ``onnx.checker``, and compares onnxruntime with Keras
on the whole test set. Only a model that passes the gate is written, logged to
the run and registered under an alias; a failing one leaves no ``model.onnx``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from digits_predict.contract import METADATA_KEYS, contract_metadata
from stages.atomic import write_bytes, write_json, write_text
from stages.config import ExportParams, load_params
from stages.datasets import load_split
from stages.errors import StageError, run_stage
from stages.model_card import model_card
from stages.model_io import load_keras_model, predict_probabilities
from stages.onnx_export import convert_to_onnx, onnx_session, run_onnx, set_metadata
from stages.parity import ParityReport, compare_predictions
from stages.tracking import RunRef, reopen_run, retry_locked


def build_checked_onnx(model, params: ExportParams, provenance: dict[str, str]):  # noqa: ANN001, ANN201
    """Convert, attach the contract and pass ``onnx.checker``'s full check."""
    import onnx

    proto = convert_to_onnx(model, params.opset)
    set_metadata(proto, contract_metadata(**provenance))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise StageError(f"converted ONNX model fails onnx.checker: "
                         f"{str(err).splitlines()[0]}") from None
    return proto


def check_parity(model_bytes: bytes, keras_probs: np.ndarray, images: np.ndarray,
                 labels: np.ndarray, params: ExportParams) -> ParityReport:
    onnx_probs = run_onnx(onnx_session(model_bytes), images)
    return compare_predictions(keras_probs, onnx_probs, labels, params.tolerance,
                               params.min_agreement)


def register(model_bytes: bytes, images: np.ndarray, params: ExportParams) -> str:
    """Log the ONNX model to the open run and point the registry alias at the new version."""
    import mlflow
    import onnx
    from mlflow.models import infer_signature

    example = images[:5].astype(np.float32)
    session = onnx_session(model_bytes)
    signature = infer_signature(example, run_onnx(session, example))
    info = mlflow.onnx.log_model(
        onnx.load_from_string(model_bytes), name="onnx_model", signature=signature,
        input_example=example, registered_model_name=params.registered_model_name,
        save_as_external_data=False, onnx_execution_providers=["CPUExecutionProvider"],
        pip_requirements=[f"onnxruntime=={__import__('onnxruntime').__version__}",
                          f"onnx=={onnx.__version__}"])
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    retry_locked(lambda: client.set_registered_model_alias(
        params.registered_model_name, params.alias, version), "setting the registry alias")
    return version


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", required=True, type=Path, help="the trained .keras model")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--run-file", required=True, type=Path)
    parser.add_argument("--onnx-out", required=True, type=Path)
    parser.add_argument("--parity-out", required=True, type=Path)
    parser.add_argument("--card-out", required=True, type=Path)
    args = parser.parse_args(argv)
    params = load_params(args.params).export
    ref = RunRef.read(args.run_file)
    x_test, y_test = load_split(args.data_dir / "test.npz")
    # a model from an earlier run must not pass for this one's if the gate fails
    args.onnx_out.unlink(missing_ok=True)
    model = load_keras_model(args.model)

    import mlflow
    import onnxruntime

    with reopen_run(ref) as run:
        tags = run.data.tags
        keras_probs = predict_probabilities(model, x_test)
        keras_accuracy = float((keras_probs.argmax(axis=1) == y_test).mean())
        provenance = {"mlflow_run_id": ref.run_id,
                      "data_digest": tags.get("data_digest", "unknown"),
                      "git_commit": tags.get("git_commit", "unknown"),
                      "test_accuracy": keras_accuracy}
        proto = build_checked_onnx(model, params, provenance)
        model_bytes = proto.SerializeToString()
        report = check_parity(model_bytes, keras_probs, x_test, y_test, params)
        figures = {f"parity_{key}": value for key, value in report.as_dict().items()
                   if isinstance(value, float)}
        retry_locked(lambda: mlflow.log_metrics(figures), "logging parity metrics")
        if not report.passed:
            mlflow.set_tag("parity", "failed: " + "; ".join(report.failures))
            raise StageError("parity gate failed, no ONNX model written: "
                             + "; ".join(report.failures))
        parity = {**report.as_dict(), "onnxruntime_version": onnxruntime.__version__,
                  "provider": "CPUExecutionProvider", "opset": params.opset}
        metadata = {key: value for key, value in
                    ((p.key, p.value) for p in proto.metadata_props) if key in METADATA_KEYS}
        version = register(model_bytes, x_test, params)
        write_bytes(args.onnx_out, model_bytes)
        write_json(args.parity_out, parity)
        write_text(args.card_out, model_card(metadata, parity, params, version))
        mlflow.log_artifact(str(args.parity_out))
        mlflow.log_artifact(str(args.card_out))
        mlflow.set_tag("parity", "passed")
    print(f"export: parity passed (max abs diff {report.max_abs_diff:.2e}, agreement "
          f"{report.argmax_agreement:.2%}); registered {params.registered_model_name} "
          f"v{version} as @{params.alias}", file=sys.stderr)


if __name__ == "__main__":
    run_stage("export", main)
