"""``python -m demo`` (what ``make demo`` runs): the current models into the site, then serve it.

The model files are the pipeline's, named by dvc.yaml's ``vars`` (``onnx_model`` and, if the
pipeline has it, ``int8_model``); the site must have been built (``python -m demo.build``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from demo.build import BuildError, install_models
from demo.serve import SiteError, port_number, serve
from kernel.cli import run_command

PROJECT = Path(__file__).resolve().parents[1]
# dvc.yaml's names of the model files, per model the page offers.
PIPELINE_VARS = {"fp32": "onnx_model", "int8": "int8_model"}


def pipeline_models(root: Path = PROJECT) -> dict[str, Path]:
    """The model files the pipeline writes, as dvc.yaml's ``vars`` name them (absolute)."""
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    variables: dict[str, str] = {}
    for entry in pipeline.get("vars", []):
        variables.update(entry)
    return {name: root / variables[var] for name, var in PIPELINE_VARS.items() if var in variables}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    parser.add_argument("--site", type=Path, default=PROJECT / "demo" / "site")
    parser.add_argument("--port", type=port_number, default=8000, help="0 picks a free one")
    args = parser.parse_args(argv)
    if not args.site.is_dir():
        raise SiteError(f"{args.site} is not built; run make demo, which builds it")
    models = pipeline_models()
    if "fp32" not in models:
        raise BuildError(f"dvc.yaml has no var {PIPELINE_VARS['fp32']!r} naming the model")
    installed = install_models(args.site, models)
    if "fp32" not in installed:
        print(
            f"demo: warning: {models['fp32'].relative_to(PROJECT)} is missing, so the "
            "page has no model to run: run `make repro` first",
            file=sys.stderr,
        )
    serve(args.site, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(run_command("demo", main, expected=(OSError,)))
