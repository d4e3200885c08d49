"""``python -m serving.triton MODEL.onnx REPOSITORY``: a Triton model repository.

Writes ``REPOSITORY/<name>/config.pbtxt`` and ``REPOSITORY/<name>/1/model.onnx`` for
Triton's onnxruntime backend: tensor names, types and dims read from the ONNX graph
(dims without the batch axis, which ``max_batch_size`` stands for), dynamic batching,
one CPU instance. The folder is replaced whole, so a failed run leaves the previous one.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from digits_predict.contract import MAX_BATCH_SIZE
from kernel.cli import CommandError, run_command
from kernel.params import load_params

# ONNX TensorProto element types -> Triton's config names
_TRITON_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 6: "TYPE_INT32",
                 7: "TYPE_INT64", 10: "TYPE_FP16", 11: "TYPE_FP64"}  # fmt: skip
# how long Triton may hold a request to batch it with others: short, the model takes ~0.1 ms
MAX_QUEUE_DELAY_MICROSECONDS = 100


def model_config(model_bytes: bytes, name: str) -> str:
    """``config.pbtxt`` (protobuf text format) for the ONNX model, from its graph."""
    import onnx

    graph = onnx.load_from_string(model_bytes).graph
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    lines = [
        f'name: "{name}"',
        'backend: "onnxruntime"',
        f"max_batch_size: {MAX_BATCH_SIZE}",
        *_tensors("input", inputs),
        *_tensors("output", graph.output),
        f"dynamic_batching {{ max_queue_delay_microseconds: {MAX_QUEUE_DELAY_MICROSECONDS} }}",
        "instance_group [ { count: 1, kind: KIND_CPU } ]",
    ]
    return "\n".join(lines) + "\n"


def _tensors(role: str, values: Sequence) -> list[str]:
    entries = []
    for value in values:
        tensor = value.type.tensor_type
        dims = [dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor.shape.dim]
        if not dims or dims[0] != -1 or -1 in dims[1:]:
            raise CommandError(
                f"graph {role} {value.name!r} has dims {dims}; expected a dynamic batch axis "
                "first and fixed dims after it"
            )
        if tensor.elem_type not in _TRITON_TYPES:
            raise CommandError(
                f"graph {role} {value.name!r} has ONNX element type {tensor.elem_type}"
            )
        entries.append(
            f'  {{ name: "{value.name}", data_type: {_TRITON_TYPES[tensor.elem_type]}, '
            f"dims: [ {', '.join(str(d) for d in dims[1:])} ] }}"
        )
    return [f"{role} [", ",\n".join(entries), "]"]


def write_repository(model_path: Path, repository: Path, name: str) -> Path:
    """Write the repository's model folder; return it."""
    if not model_path.is_file():
        raise CommandError(f"{model_path} does not exist; run `make repro` first")
    model_bytes = model_path.read_bytes()
    config = model_config(model_bytes, name)
    repository.mkdir(parents=True, exist_ok=True)
    target = repository / name
    with tempfile.TemporaryDirectory(dir=repository, prefix=f".{name}.staged-") as scratch:
        staged = Path(scratch) / name
        (staged / "1").mkdir(parents=True)
        (staged / "1" / "model.onnx").write_bytes(model_bytes)
        (staged / "config.pbtxt").write_text(config)
        os.chmod(staged, 0o755)
        if target.exists():
            target.rename(Path(scratch) / "previous")
        staged.rename(target)
    return target


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m serving.triton MODEL.onnx REPOSITORY", file=sys.stderr)
        raise SystemExit(2)
    name = load_params().export.registered_model_name
    folder = write_repository(Path(args[0]), Path(args[1]), name)
    print(f"triton: wrote {folder}/config.pbtxt and {folder}/1/model.onnx", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_command("triton", main))
