"""The handed-off ONNX model, as the stages after export read it back: loaded, contract checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kernel.cli import CommandError

if TYPE_CHECKING:
    import onnxruntime


@dataclass(frozen=True)
class HandedOffModel:
    model_bytes: bytes
    session: onnxruntime.InferenceSession
    metadata: dict[str, str]  # the contract and provenance export wrote into it


def load_handed_off_model(path: Path) -> HandedOffModel:
    """``path`` read and loaded by onnxruntime, its contract checked as ``digits_predict`` does."""
    from digits_predict.contract import check_contract
    from digits_predict.errors import ContractError
    from stages.handoff.onnx_runtime import onnx_session

    try:
        model_bytes = path.read_bytes()
    except FileNotFoundError:
        raise CommandError(f"{path}: no ONNX model (run the export stage first)") from None
    except OSError as err:
        raise CommandError(f"{path}: cannot read the ONNX model ({err.strerror or err})") from None
    try:
        session = onnx_session(model_bytes)
    except Exception as err:  # onnxruntime's own exception types, one per failure kind
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CommandError(
            f"{path}: not an ONNX model onnxruntime can load ({first}); expected the model "
            "the export stage wrote"
        ) from None
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    try:
        check_contract(metadata, session.get_inputs(), session.get_outputs())
    except ContractError as err:
        raise CommandError(f"{path}: {err}; expected the model the export stage wrote") from None
    return HandedOffModel(model_bytes, session, metadata)
