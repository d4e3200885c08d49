"""The int8 gate: quantize the handed-off fp32 model and accept the result only if it keeps up.

``gate_int8_model`` is the quantize stage's core: the fp32 ONNX bytes and arrays in, the
int8 bytes with their metadata and the report out. It writes nothing and logs nothing.
On the whole test set, each image on its own, against the fp32 model: the accuracy may
drop by at most ``max_accuracy_drop``, the argmax must agree on at least
``min_agreement`` of the images and no probability may move by more than
``max_probability_diff``. With ``quantize.method: auto`` the methods that suit the graph
are tried cheapest first (``quantization.AUTO_CANDIDATES``) and the first int8 model that
passes is kept; the report names it, and what each one tried before it failed on.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace

import numpy as np

from kernel.params import QuantizeParams
from stages.handoff.onnx_runtime import onnx_session, run_onnx, set_metadata
from stages.handoff.quantization import (
    FP32_OUTPUT,
    calibration_sample,
    candidate_methods,
    is_static,
    method_description,
    output_layer,
    quantize_model,
)
from tracking.version_tags import INT8, Int8Origin, VersionTags


@dataclass(frozen=True)
class Int8Report:
    samples: int
    method: str
    calibration_images: int
    fp32_accuracy: float
    int8_accuracy: float
    accuracy_drop: float
    argmax_agreement: float
    max_abs_diff: float
    fp32_bytes: int
    int8_bytes: int
    max_accuracy_drop: float
    min_agreement: float
    max_probability_diff: float
    failures: tuple[str, ...]
    # why this method: auto's candidates tried before it, each with what it failed on
    choice: str = ""
    tried: tuple[dict, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def size_ratio(self) -> float:
        return self.fp32_bytes / self.int8_bytes

    def as_dict(self) -> dict:
        report = asdict(self)
        report["failures"] = list(self.failures)
        report["tried"] = [{**t, "failures": list(t["failures"])} for t in self.tried]
        report["size_ratio"] = self.size_ratio
        report["passed"] = self.passed
        return report

    def figures(self) -> dict[str, float]:
        """The report's numbers, as MLflow metrics take them."""
        return {
            key: float(value)
            for key, value in self.as_dict().items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }


@dataclass(frozen=True)
class GatedInt8Model:
    model_bytes: bytes
    metadata: dict[str, str]
    report: Int8Report
    # what its registry version will carry, but the fp32 version and the test data's digest
    tags: VersionTags


def compare_int8(
    fp32_probs: np.ndarray, int8_probs: np.ndarray, labels: np.ndarray, params: QuantizeParams
) -> dict:
    """The gate's figures and failures (each one line) for two models' test predictions."""
    fp32_pred, int8_pred = fp32_probs.argmax(axis=1), int8_probs.argmax(axis=1)
    fp32_accuracy = float((fp32_pred == labels).mean())
    int8_accuracy = float((int8_pred == labels).mean())
    agreement = float((fp32_pred == int8_pred).mean())
    diff = np.abs(fp32_probs.astype(np.float64) - int8_probs.astype(np.float64))
    max_diff = float(diff.max()) if diff.size else 0.0
    drop = fp32_accuracy - int8_accuracy
    failures = []
    if not np.isfinite(int8_probs).all():
        failures.append("int8 output holds NaN or infinity")
    # 1e-12: accuracies are ratios of counts; a drop of exactly the limit passes
    if drop > params.max_accuracy_drop + 1e-12:
        failures.append(
            f"test accuracy drops {drop * 100:.2f} points ({fp32_accuracy:.2%} -> "
            f"{int8_accuracy:.2%}) > {params.max_accuracy_drop * 100:.2f}"
        )
    if agreement < params.min_agreement:
        differ = int((fp32_pred != int8_pred).sum())
        failures.append(
            f"argmax agreement with fp32 {agreement:.2%} < {params.min_agreement:.2%} "
            f"({differ} of {len(labels)} images differ)"
        )
    if not max_diff <= params.max_probability_diff:  # NaN fails too
        failures.append(
            f"max abs difference of probabilities {max_diff:.3g} > {params.max_probability_diff:g}"
        )
    return {
        "samples": int(len(labels)),
        "fp32_accuracy": fp32_accuracy,
        "int8_accuracy": int8_accuracy,
        "accuracy_drop": drop,
        "argmax_agreement": agreement,
        "max_abs_diff": max_diff,
        "failures": tuple(failures),
    }


def gate_int8_model(
    fp32_bytes: bytes,
    fp32_metadata: dict[str, str],
    train_images: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    params: QuantizeParams,
) -> GatedInt8Model:
    """Quantize ``fp32_bytes`` and compare both models with onnxruntime on every test image.

    With ``auto``, each candidate method in turn until one passes (the last one's figures
    when none does). The int8 model keeps the fp32 model's contract and provenance;
    ``test_accuracy`` becomes its own, and it names its method and the fp32 model it came
    from.
    """
    fp32_probs = run_onnx(onnx_session(fp32_bytes), test_images)
    candidates = candidate_methods(fp32_bytes, params.method)
    tried: list[dict] = []
    for method in candidates:
        gated = _gate_one(fp32_bytes, fp32_metadata, fp32_probs, train_images, test_images,
                          test_labels, params, method)  # fmt: skip
        if gated.report.passed or method == candidates[-1]:
            break
        tried.append({"method": method, "failures": gated.report.failures})
    choice = _choice(params.method, candidates, tried, gated.report)
    report = replace(gated.report, choice=choice, tried=tuple(tried))
    if not report.passed and tried:
        failed = "; ".join(f"{t['method']}: {t['failures'][0]}" for t in tried)
        report = replace(report, failures=(
            f"{report.method}: {report.failures[0]}", *report.failures[1:],
            f"(tried before it: {failed})",
        ))  # fmt: skip
    return replace(gated, report=report)


def _choice(requested: str, candidates: tuple[str, ...], tried: list[dict], report) -> str:  # noqa: ANN001
    """Why the report's method: the param, or auto's order and what failed before it."""
    if requested != "auto":
        return f"quantize.method is {requested}"
    order = " -> ".join(candidates)
    if not report.passed:
        return f"auto tried {order}: none passed the gate"
    failed = f" ({', '.join(t['method'] for t in tried)} failed it)" if tried else ""
    return (
        f"auto tries {order}, cheapest first: {report.method} is the first to pass the gate{failed}"
    )


def _gate_one(
    fp32_bytes: bytes,
    fp32_metadata: dict[str, str],
    fp32_probs: np.ndarray,
    train_images: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    params: QuantizeParams,
    method: str,
) -> GatedInt8Model:
    """One method's int8 model and its gate."""
    import onnx

    calibration = (
        calibration_sample(train_images, params.calibration_images, params.seed)
        if is_static(method)
        else np.empty((0, *train_images.shape[1:]), np.float32)
    )
    quantized = onnx.load_from_string(quantize_model(fp32_bytes, method, calibration))
    # one image per call: dynamic quantization scales activations per batch, so an image's
    # answer would depend on its neighbours; alone, it gets what a one-image request gets
    int8_probs = run_onnx(onnx_session(quantized.SerializeToString()), test_images, batch_size=1)
    figures = compare_int8(fp32_probs, int8_probs, test_labels, params)
    kept = output_layer(fp32_bytes) if method.endswith(FP32_OUTPUT) else None
    tags = VersionTags(
        precision=INT8,
        test_accuracy=figures["int8_accuracy"],
        int8=Int8Origin(
            quantization=method_description(method, len(calibration), kept),
            fp32_model_sha256=hashlib.sha256(fp32_bytes).hexdigest(),
            fp32_test_accuracy=figures["fp32_accuracy"],
        ),
    )
    metadata = {**fp32_metadata, **tags.int8_metadata()}
    set_metadata(quantized, metadata)  # replaces the quantizer's own "onnx.infer" entry
    int8_bytes = quantized.SerializeToString()
    report = Int8Report(
        method=method,
        calibration_images=len(calibration),
        fp32_bytes=len(fp32_bytes),
        int8_bytes=len(int8_bytes),
        max_accuracy_drop=params.max_accuracy_drop,
        min_agreement=params.min_agreement,
        max_probability_diff=params.max_probability_diff,
        **figures,
    )
    return GatedInt8Model(int8_bytes, metadata, report, tags)
