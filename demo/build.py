"""Build the draw-a-digit site: the page, the two onnxruntime-web files it loads, the models.

    python -m demo.build --out demo/site [--model models/model.onnx] [--int8-model PATH]

The page's own files come from ``demo/page/``; onnxruntime-web from ``demo/node_modules``
(``npm ci --prefix demo``), of whose ~136 MB ``dist/`` only the ES module and the
WebAssembly binary the page loads are copied. The models go to ``models/`` in the site
with ``models.json``, which names them and the contract's tensor names. A model file that
does not exist is left out, and the page then tells its user to run ``make repro``; so is
an int8 model that was not quantized from the fp32 model beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from kernel.atomic import atomic_path, staged_folder, write_text
from kernel.cli import CommandError, run_command

DEMO = Path(__file__).resolve().parent
PAGE_SOURCES = DEMO / "page"
NODE_MODULES = DEMO / "node_modules"
PAGE_FILES = ("index.html", "app.mjs", "mnist_form.mjs", "style.css")
# The WebAssembly-only build of onnxruntime-web as one ES module (its Emscripten loader
# inlined), and the binary it fetches from ``ort.env.wasm.wasmPaths``.
RUNTIME_FILES = (
    "onnxruntime-web/dist/ort.wasm.bundle.min.mjs",
    "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm",
)
VENDOR = "vendor"
MODELS = "models"
MANIFEST = "models.json"
# The page's model choices and the file each is served as; fp32 is the one it opens first,
# and is installed first, so that the int8 model can be checked against it.
MODEL_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
# Where an int8 model's metadata names the fp32 model it was quantized from (its sha256).
FP32_DIGEST_KEY = "fp32_model_sha256"
# Marks a folder this script built, so that a rebuild may replace it and nothing else.
SITE_MARK = ".demo-site"


class BuildError(CommandError):
    """The site cannot be built as asked; the message says what to do."""


def build_site(out: Path, models: Mapping[str, Path | None]) -> list[str]:
    """Write the whole site into ``out`` (replaced as a whole); return the models it holds.

    ``models`` maps names of ``MODEL_FILES`` to model files; a None or absent file is left out.
    """
    sources = [PAGE_SOURCES / name for name in PAGE_FILES]
    runtime = [NODE_MODULES / name for name in RUNTIME_FILES]
    for source in sources:
        if not source.is_file():
            raise BuildError(f"{source} is missing; expected the page's sources in {PAGE_SOURCES}")
    missing = [path for path in runtime if not path.is_file()]
    if missing:
        raise BuildError(
            f"{missing[0]} is missing; run `npm ci --prefix demo` (make demo does) first"
        )
    _check_replaceable(out)
    # a server never sees half a site: the whole site is swapped in at once
    with staged_folder(out) as staged:
        (staged / VENDOR).mkdir()
        staged.joinpath(SITE_MARK).touch()
        # copyfile, not copy2: fresh timestamps keep make's view of the site up to date.
        for path in runtime:
            shutil.copyfile(path, staged / VENDOR / path.name)
        installed = install_models(staged, models)
        for source in sources:
            shutil.copyfile(source, staged / source.name)
    return installed


def install_models(site: Path, models: Mapping[str, Path | None]) -> list[str]:
    """Copy the models into ``site`` and write its manifest; return the names installed.

    A model that is not there is removed from the site. An fp32 model that is not a valid
    model of the contract stops the build; a bad int8 model is left out with a warning,
    since the page works without it. So is a stale int8 model: one whose metadata does not
    name the installed fp32 model as the one it was quantized from (as when the int8 gate
    failed for a newer fp32 model and the old int8 file stayed).
    """
    from digits_predict.contract import INPUT_NAME, OUTPUT_NAME

    unknown = sorted(set(models) - set(MODEL_FILES))
    if unknown:
        raise BuildError(f"unknown model name(s) {unknown}; expected {sorted(MODEL_FILES)}")
    folder = site / MODELS
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    fp32_digest = None
    for name, filename in MODEL_FILES.items():
        source = models.get(name)
        target = folder / filename
        if source is None or not Path(source).exists():
            target.unlink(missing_ok=True)
            continue
        source = Path(source)
        try:
            metadata = _model_metadata(source)
            if name == "int8" and fp32_digest is not None:
                _check_quantized_from(source, metadata, Path(models["fp32"]), fp32_digest)
        except BuildError as err:
            if name == "fp32":
                raise
            print(f"demo: warning: {name} model left out: {err}", file=sys.stderr)
            target.unlink(missing_ok=True)
            continue
        if name == "fp32":
            fp32_digest = hashlib.sha256(source.read_bytes()).hexdigest()
        with atomic_path(target) as staged_copy:  # a server may be reading the old one
            shutil.copyfile(source, staged_copy)
        entries.append({"name": name, "file": filename, "bytes": target.stat().st_size})
    # "files" names the file of every model the page offers, so it can name a missing one.
    manifest = {
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "models": entries,
        "files": MODEL_FILES,
    }
    write_text(site / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return [entry["name"] for entry in entries]


def _model_metadata(path: Path) -> Mapping[str, str]:
    """The metadata of ``path`` if it is a model the page can run (the Predictor's checks)."""
    from digits_predict import PredictError, Predictor

    try:
        return Predictor(path).metadata
    except PredictError as err:
        raise BuildError(str(err)) from None


def _check_quantized_from(
    int8: Path, metadata: Mapping[str, str], fp32: Path, fp32_digest: str
) -> None:
    made_from = metadata.get(FP32_DIGEST_KEY)
    if made_from is None:
        raise BuildError(
            f"{int8} does not say which fp32 model it was quantized from (no "
            f"{FP32_DIGEST_KEY} in its metadata); expected one quantized from {fp32}"
        )
    if made_from != fp32_digest:
        raise BuildError(
            f"{int8} is stale: it was quantized from another fp32 model than {fp32} "
            f"({FP32_DIGEST_KEY} {made_from[:12]}..., not {fp32_digest[:12]}...)"
        )


def _check_replaceable(out: Path) -> None:
    if out.exists() and not (out.is_dir() and (out / SITE_MARK).exists() or _is_empty_dir(out)):
        raise BuildError(
            f"{out} exists and is not a site this script built; expected a new or empty folder"
        )


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _size_mb(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo.build", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="the site folder to write")
    parser.add_argument("--model", type=Path, help="the fp32 ONNX model (left out if absent)")
    parser.add_argument("--int8-model", type=Path, help="the int8 ONNX model, if there is one")
    args = parser.parse_args(argv)
    installed = build_site(args.out, {"fp32": args.model, "int8": args.int8_model})
    models = ", ".join(installed) if installed else "no model"
    print(f"demo: built {args.out} ({_size_mb(args.out):.1f} MB) with {models}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_command("demo", main, expected=(OSError,)))
