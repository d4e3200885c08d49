"""Build the draw-a-digit site: the page, the two onnxruntime-web files it loads, the models.

    python -m demo.build --out demo/site [--model models/model.onnx] [--int8-model PATH]

The page's own files come from ``demo/page/``; onnxruntime-web from ``demo/node_modules``
(``npm ci --prefix demo``), of whose ~136 MB ``dist/`` only the ES module and the
WebAssembly binary the page loads are copied. The models go to ``models/`` in the site
with ``models.json``, which names them and the contract's tensor names. A model file that
does not exist is left out, and the page then tells its user to run ``make repro``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

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
# The page's model choices and the file each is served as; fp32 is the one it opens first.
MODEL_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
# Marks a folder this script built, so that a rebuild may replace it and nothing else.
SITE_MARK = ".demo-site"


class BuildError(Exception):
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
    staged = out.with_name(f".{out.name}.staged")
    shutil.rmtree(staged, ignore_errors=True)
    try:
        (staged / VENDOR).mkdir(parents=True)
        staged.joinpath(SITE_MARK).touch()
        # copyfile, not copy2: fresh timestamps keep make's view of the site up to date.
        for path in runtime:
            shutil.copyfile(path, staged / VENDOR / path.name)
        installed = install_models(staged, models)
        for source in sources:
            shutil.copyfile(source, staged / source.name)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    _swap_in(staged, out)
    return installed


def install_models(site: Path, models: Mapping[str, Path | None]) -> list[str]:
    """Copy the models into ``site`` and write its manifest; return the names installed.

    A model that is not there is removed from the site. An fp32 model that is not a valid
    model of the contract stops the build; a bad int8 model is left out with a warning,
    since the page works without it.
    """
    from digits_predict.contract import INPUT_NAME, OUTPUT_NAME

    unknown = sorted(set(models) - set(MODEL_FILES))
    if unknown:
        raise BuildError(f"unknown model name(s) {unknown}; expected {sorted(MODEL_FILES)}")
    folder = site / MODELS
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, filename in MODEL_FILES.items():
        source = models.get(name)
        target = folder / filename
        if source is None or not Path(source).exists():
            target.unlink(missing_ok=True)
            continue
        problem = _model_problem(Path(source))
        if problem and name == "fp32":
            raise BuildError(problem)
        if problem:
            print(f"demo: warning: {name} model left out: {problem}", file=sys.stderr)
            target.unlink(missing_ok=True)
            continue
        _copy_atomically(Path(source), target)
        entries.append({"name": name, "file": filename, "bytes": target.stat().st_size})
    manifest = {"input": INPUT_NAME, "output": OUTPUT_NAME, "models": entries}
    _write_atomically(site / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return [entry["name"] for entry in entries]


def _model_problem(path: Path) -> str | None:
    """Why ``path`` is not a model the page can run (the Predictor's checks), or None."""
    from digits_predict import PredictError, Predictor

    try:
        Predictor(path)
    except PredictError as err:
        return str(err)
    return None


def _check_replaceable(out: Path) -> None:
    if out.exists() and not (out.is_dir() and (out / SITE_MARK).exists() or _is_empty_dir(out)):
        raise BuildError(
            f"{out} exists and is not a site this script built; expected a new or empty folder"
        )


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _swap_in(staged: Path, out: Path) -> None:
    """Put the staged site in place of ``out``, so a server never sees half a site."""
    old = out.with_name(f".{out.name}.backup")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staged.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _copy_atomically(source: Path, target: Path) -> None:
    temporary = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def _write_atomically(target: Path, text: str) -> None:
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, target)


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
    try:
        installed = build_site(args.out, {"fp32": args.model, "int8": args.int8_model})
    except (BuildError, OSError) as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 1
    models = ", ".join(installed) if installed else "no model"
    print(f"demo: built {args.out} ({_size_mb(args.out):.1f} MB) with {models}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
