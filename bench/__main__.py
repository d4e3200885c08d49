"""``python -m bench``: measure the pipeline in a fresh copy of the project, side by side.

1. the yardstick: the hand-written script the pipeline replaces (``bench/script.py``: load,
   split, fit with validation, evaluate, save, convert, parity check), a forced cold
   ``dvc repro`` of every stage (data from a local copy) and ``dvc exp run -S
   train.dropout=0.25``, interleaved; per-stage wall time, fixed cost and peak RSS; no-op repro;
2. the train stage against the script's fit alone, same model and epochs;
3. onnxruntime against Keras: batch-1 latency, 10,000-image throughput, whole-process
   classification of one PNG by ``digits-predict`` and by a Keras script;
4. the model served over the Open Inference Protocol (MLServer, ``bench.serving``): cold
   start, peak memory, batch-1 latency and batch-64 throughput next to the Predictor; then
   under load (``bench.serving_load``): locust with 1 to 64 clients over HTTP and gRPC,
   request log on and off, and an overload of 256 clients;
5. the int8 model against the fp32 one (``bench.int8``): throughput, batch-1 latency, size,
   accuracy;
6. the draw-a-digit page in headless Chromium (``bench.page_latency``): stroke end to answer;
7. a 4-trial grid through ``dvc queue start -j 2`` and through ``python -m sweep`` on Ray
   with 2 workers (``bench.sweep``): wall times and the per-trial overhead;
8. the train stage logging to the team server (``make team-up``, as a member) against the
   local SQLite store (``bench.team_server``);
9. test accuracy and training time of the presets in ``bench/presets.yaml``, each trained
   with every seed of ``--seeds`` (mean ± sd, ``bench.seeds``), exported through the parity
   gate and quantized through the int8 gate.

Writes ``reports/bench.json`` and ``BENCHMARKS.md``. Figures are medians of ``--repeats``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from bench.commands import bench_env, json_of, timed
from bench.report import render_markdown
from bench.seeds import PRESET_SEEDS, preset_over_seeds
from bench.serving import bench_serving
from bench.serving_load import bench_load
from bench.sweep import bench_sweep
from bench.team_server import bench_team_server
from harness.processes import stage_command
from harness.workspace import project_copy
from kernel.atomic import StagedFiles
from kernel.cli import OneLineArgumentParser
from kernel.paths import PROJECT_ROOT, artifact
from stages.dataset.arrays import split_file

BENCH_JSON, BENCHMARKS_MD = PROJECT_ROOT / "reports/bench.json", PROJECT_ROOT / "BENCHMARKS.md"
STAGES = ("fetch", "preprocess", "train", "evaluate", "export", "quantize")


def make_copy(work: Path, log: Path) -> Path:
    """A fresh git + DVC repo holding the project, stage commands wrapped by the probe."""
    with open(log, "a") as out:
        out.write(f"\n$ project copy into {work / 'repo'}\n")
    return project_copy(
        work / "repo",
        bench_env(),
        folders=("bench", "sweep"),
        wrap_command=lambda name, cmd: (
            f"python -m bench.probe --label {name} --out {work}/probe/{name}.json -- {cmd}"
        ),
    )


def stage_argv(name: str, params: Path, paths: dict[str, Path | str]) -> list[str]:
    """dvc.yaml's command for stage ``name``, with ``params`` and some paths of its own."""
    command = stage_command(name, paths, PROJECT_ROOT)
    return [sys.executable, *command[1:3], "--params", str(params), *command[3:]]


def use_local_data(repo: Path, work: Path, log: Path) -> Path:
    """Fetch once (any source), then point the copy's fetch at that file: the network is
    not what the pipeline is timed on. The copy commits the change; returns the file."""
    timed(["dvc", "repro", "fetch"], repo, log)
    local = work / "mnist.npz"
    shutil.copyfile(repo / artifact("raw"), local)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["fetch"].update(sources=["local"], local_path=str(local))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _commit(repo, log, "bench: data from a local copy")
    return local


def _commit(repo: Path, log: Path, message: str) -> None:
    timed(["git", "add", "-A"], repo, log)
    timed(["git", "commit", "-q", "-m", message], repo, log)


def _stage_probes(work: Path) -> dict[str, dict]:
    return {name: json.loads((work / "probe" / f"{name}.json").read_text()) for name in STAGES}


def bench_pipeline(repo: Path, work: Path, log: Path, repeats: int) -> dict:
    """The script, a forced repro of every stage and one experiment, interleaved ``repeats``
    times; then no-op repros. Every stage's wall time, fixed cost and peak RSS per repro."""
    mnist = use_local_data(repo, work, log)
    timed(["dvc", "repro"], repo, log)  # the baseline the experiments start from, committed
    _commit(repo, log, "bench: baseline")
    epochs = len((repo / artifact("history")).read_text().strip().splitlines()) - 1
    script = [sys.executable, str(PROJECT_ROOT / "bench/script.py"), "params.yaml", str(mnist)]
    script_out = work / "script"
    script_out.mkdir()
    walls: dict[str, list[float]] = {"script": [], "cold_repro": [], "exp_run": []}
    per_stage: dict[str, list[dict]] = {name: [] for name in STAGES}
    for _ in range(repeats):  # interleaved, so drift in machine load hits all three alike
        walls["script"].append(timed([*script, str(epochs), str(script_out)], repo, log))
        walls["cold_repro"].append(timed(["dvc", "repro", "--force"], repo, log))
        for name, probe in _stage_probes(work).items():
            per_stage[name].append(probe)
        walls["exp_run"].append(timed(["dvc", "exp", "run", "-S", "train.dropout=0.25"], repo, log))
        # back to the baseline's params, lock and reports; the next forced repro rewrites the rest
        timed(["git", "checkout", "--", "."], repo, log)
    noop = [timed(["dvc", "repro"], repo, log) for _ in range(3)]
    median = {name: statistics.median(values) for name, values in walls.items()}

    def stage_median(name: str, key: str) -> float | None:
        values = [probe[key] for probe in per_stage[name] if probe.get(key) is not None]
        return statistics.median(values) if values else None

    return {
        "epochs": epochs,
        "repeats": repeats,
        "script_seconds": median["script"],
        "cold_repro_seconds": median["cold_repro"],
        "exp_run_seconds": median["exp_run"],
        "cold_repro_ratio": median["cold_repro"] / median["script"],
        "exp_run_ratio": median["exp_run"] / median["script"],
        "runs": walls,
        "noop_repro_seconds": statistics.median(noop),
        "stages": {
            name: {
                "wall_seconds": stage_median(name, "wall_seconds"),
                "fixed_seconds": stage_median(name, "fixed_seconds"),
                "peak_rss_mb": max(probe["peak_rss_mb"] for probe in per_stage[name]),
            }
            for name in STAGES
        },
    }


def _train_phases(repo: Path, run_file: Path) -> dict[str, float]:
    import mlflow

    from stages.run_record.runs import locate_run
    from tracking.store import tracking_uri

    # every repeat trains the same bytes: the newest run with their digest is the last one
    ref = locate_run(run_file, tracking_uri(repo))
    run = mlflow.MlflowClient(ref.tracking_uri).get_run(ref.run_id)
    return {
        key.removeprefix("timing/").removesuffix("_seconds"): value
        for key, value in run.data.metrics.items()
        if key.startswith("timing/")
    }


def bench_training_overhead(repo: Path, work: Path, log: Path, repeats: int) -> dict:
    epochs = len((repo / artifact("history")).read_text().strip().splitlines()) - 1
    out = work / "overhead"
    out.mkdir()
    stage_cmd = stage_argv(
        "train",
        repo / "params.yaml",
        {
            "model": out / "model.keras",
            "history": out / "history.csv",
            "run_file": out / "run.json",
        },
    )
    plain_cmd = [
        sys.executable,
        str(PROJECT_ROOT / "bench/script.py"),
        "params.yaml",
        str(work / "mnist.npz"),
        str(epochs),
        str(out),
        "--fit-only",
    ]
    stage_walls, plain_walls = [], []
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        plain_walls.append(timed(plain_cmd, repo, log))
        stage_walls.append(timed(stage_cmd, repo, log))
    stage, plain = statistics.median(stage_walls), statistics.median(plain_walls)
    return {
        "epochs": epochs,
        "repeats": repeats,
        "stage_seconds": stage,
        "script_fit_seconds": plain,
        "ratio": stage / plain,
        "stage_runs": stage_walls,
        "script_runs": plain_walls,
        "stage_phases_last_run": _train_phases(repo, out / "run.json"),
    }


def _json_of(module: str, *args: str, repo: Path) -> dict:
    """``python -m <module> args`` in the copy: the JSON object its last line prints."""
    return json_of([sys.executable, "-m", module, *args], repo, bench_env(), module)


def bench_inference(repo: Path, work: Path, log: Path, repeats: int) -> dict:
    test = str(split_file(artifact("prepared"), "test"))
    inference = _json_of(
        "bench.inference", artifact("model"), artifact("onnx_model"), test, repo=repo
    )
    import numpy as np
    from PIL import Image

    with np.load(repo / test) as split:
        Image.fromarray(split["x"][0]).save(work / "digit.png")
    predictor = [
        timed(
            [
                str(Path(sys.executable).parent / "digits-predict"),
                "--model",
                artifact("onnx_model"),
                str(work / "digit.png"),
            ],
            repo,
            log,
        )
        for _ in range(max(5, repeats))
    ]
    keras_script = [
        timed(
            [sys.executable, "bench/keras_png.py", artifact("model"), str(work / "digit.png")],
            repo,
            log,
        )
        for _ in range(repeats)
    ]
    inference["one_png_whole_process"] = {
        "digits_predict_seconds": statistics.median(predictor),
        "keras_script_seconds": statistics.median(keras_script),
    }
    return inference


def bench_int8(repo: Path) -> dict:
    paths = [
        artifact("onnx_model"),
        artifact("int8_model"),
        str(split_file(artifact("prepared"), "test")),
    ]
    int8 = _json_of("bench.int8", *paths, repo=repo)
    ratio = int8["int8"]["images_per_second_1_thread"] / int8["fp32"]["images_per_second_1_thread"]
    print(f"bench: int8 throughput {ratio:.2f} x fp32 (one thread)", file=sys.stderr)
    return int8


def page_latency(repo: Path, work: Path) -> dict:
    """The page built (as ``make demo`` builds it) with the copy's models, timed in Chromium."""
    from bench.page_latency import bench_page
    from demo.build import BuildError, build_site

    site = work / "site"
    models = {"fp32": repo / artifact("onnx_model"), "int8": repo / artifact("int8_model")}
    try:
        build_site(site, models)
    except BuildError as err:
        raise SystemExit(f"bench: the page cannot be built: {err}") from None
    result = bench_page(site)
    median = result["stroke_to_answer_ms"]["median"]
    print(f"bench: page stroke to answer {median:.1f} ms (median)", file=sys.stderr)
    return result


def serving(repo: Path, work: Path, log: Path) -> dict:
    paths = {
        "onnx_model": artifact("onnx_model"),
        "test": str(split_file(artifact("prepared"), "test")),
    }
    result = bench_serving(
        repo, work, log, bench_env(), PROJECT_ROOT / ".venv-serve" / "bin", paths
    )
    print(
        f"bench: served batch-1 p50 {result['oip']['batch1']['p50_ms']:.2f} ms, cold start "
        f"{result['cold_start_seconds']:.1f} s",
        file=sys.stderr,
    )
    return result


def serving_load(repo: Path, work: Path, log: Path) -> dict:
    images = str(split_file(artifact("prepared"), "test"))
    serve_bin = PROJECT_ROOT / ".venv-serve" / "bin"
    result = bench_load(repo, work, log, bench_env(), serve_bin, images)
    at_32 = next(
        run for run in result["runs"]
        if (run["protocol"], run["clients"], run["request_log"]) == ("http", 32, True)
    )  # fmt: skip
    print(
        f"bench: 32 clients over HTTP {at_32['answers_per_second']:.0f} answers/s, p99 "
        f"{at_32['p99_ms']:.1f} ms",
        file=sys.stderr,
    )
    return result


def _preset_params(repo: Path, overrides: dict, path: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


# a preset's outputs in its own folder, by the names dvc.yaml's vars give them
PRESET_FILES = {
    "model": "model.keras",
    "run_file": "run.json",
    "history": "history.csv",
    "metrics": "metrics.json",
    "classes": "classes.json",
    "confusion": "confusion.csv",
    "figures": "figures",
    "onnx_model": "model.onnx",
    "parity": "parity.json",
    "model_card": "MODEL_CARD.md",
    "int8_model": "model.int8.onnx",
    "int8_report": "int8.json",
}


def _json_or(path: Path, missing: dict) -> dict:
    """The JSON file at ``path``, or ``missing`` when a stage did not write it."""
    return json.loads(path.read_text()) if path.is_file() else missing


def bench_presets(
    repo: Path, work: Path, log: Path, names: list[str] | None, seeds: Sequence[int]
) -> dict:
    """Each preset (or those ``names``) trained once per seed: its mean ± sd over them."""
    presets = yaml.safe_load((PROJECT_ROOT / "bench/presets.yaml").read_text())
    return {
        name: preset_over_seeds(
            overrides or {},
            [
                _bench_preset(
                    repo,
                    work / "presets" / name / f"seed-{seed}",
                    log,
                    name,
                    {**(overrides or {}), "train.seed": seed},
                )
                for seed in seeds
            ],
        )
        for name, overrides in presets.items()
        if not names or name in names
    }


def _bench_preset(repo: Path, out: Path, log: Path, name: str, overrides: dict) -> dict:
    """Train, export, evaluate and quantize one preset into ``out``; its figures."""
    out.mkdir(parents=True)
    params = out / "params.yaml"
    _preset_params(repo, overrides, params)
    files = {var: out / filename for var, filename in PRESET_FILES.items()}
    timed(stage_argv("train", params, files), repo, log)
    exported = timed(stage_argv("export", params, files), repo, log, check=False)
    if files["onnx_model"].is_file():  # evaluate scores the handed-off ONNX model
        timed(stage_argv("evaluate", params, files), repo, log)
        timed(stage_argv("quantize", params, files), repo, log, check=False)
    int8 = _json_or(files["int8_report"], {"passed": False})
    speed = {}
    if int8.get("passed"):  # the twin against its fp32 model, one thread each, side by side
        test = split_file(repo / artifact("prepared"), "test")
        speed = _json_of("bench.int8", str(files["onnx_model"]), str(files["int8_model"]),
                         str(test), repo=repo)  # fmt: skip
    phases = _train_phases(repo, files["run_file"])
    parity = _json_or(files["parity"], {"passed": False})
    # without a handed-off model there is no evaluation: the Keras accuracy export measured
    metrics = _json_or(files["metrics"], {"accuracy": parity.get("keras_accuracy", float("nan"))})
    result = {
        "seed": overrides["train.seed"],
        "test_accuracy": metrics["accuracy"],
        "fit_seconds": phases.get("fit"),
        "epochs_run": len(files["history"].read_text().splitlines()) - 1,
        "parity_passed": bool(parity.get("passed")),
        "parity_max_abs_diff": parity.get("max_abs_diff"),
        "export_seconds": exported,
        "int8_passed": bool(int8.get("passed")),
        "int8_method": int8.get("method"),
        "int8_accuracy": int8.get("int8_accuracy"),
        "int8_agreement": int8.get("argmax_agreement"),
        "int8_choice": int8.get("choice"),
        "int8_speedup_1_thread": (
            speed["int8"]["images_per_second_1_thread"]
            / speed["fp32"]["images_per_second_1_thread"]
            if speed
            else None
        ),
    }
    print(
        f"bench: preset {name}, seed {result['seed']}: accuracy {metrics['accuracy']:.4f}, fit "
        f"{result['fit_seconds']:.0f} s, parity "
        f"{'passed' if result['parity_passed'] else 'FAILED'}",
        file=sys.stderr,
    )
    return result


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import keras
    import mlflow
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "versions": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "tf2onnx": tf2onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "mlflow": mlflow.__version__,
        },
    }


def team_server(repo: Path, work: Path, log: Path, repeats: int) -> dict:
    """The train stage on the team server against the local store (``bench.team_server``)."""

    def stage_cmd(out: Path) -> list[str]:
        return stage_argv(
            "train", repo / "params.yaml",
            {"model": out / "model.keras", "history": out / "history.csv",
             "run_file": out / "run.json"},
        )  # fmt: skip

    return bench_team_server(repo, work, log, repeats, stage_cmd, bench_env())


def update_presets(work: Path, log: Path, names: list[str] | None, seeds: Sequence[int]) -> None:
    """Retrain some presets on prepared data and merge them into the last full report."""
    results = _last_report()
    repo = make_copy(work, log)
    # what train reads: the prepared splits and the page's corrections (feedback.npz)
    timed(["dvc", "repro", "preprocess", "feedback"], repo, log)
    results.setdefault("accuracy", {}).update(bench_presets(repo, work, log, names, seeds))
    results["accuracy_updated"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    write_results(results)


# what ``--update`` can measure again on its own, after a repro in a fresh copy
UPDATABLE = {
    "serving": lambda repo, work, log: serving(repo, work, log),
    "load": lambda repo, work, log: serving_load(repo, work, log),
    "int8": lambda repo, work, log: bench_int8(repo),
    "page": lambda repo, work, log: page_latency(repo, work),
    "sweep": lambda repo, work, log: bench_sweep(repo, work, log, timed, bench_env()),
    "team": lambda repo, work, log: team_server(repo, work, log, 3),
}


def update_sections(names: list[str], work: Path, log: Path) -> None:
    """Measure only the named sections and merge them into the last full report."""
    unknown = sorted(set(names) - set(UPDATABLE))
    if unknown:
        raise SystemExit(f"bench: --update {','.join(unknown)}: expected some of {list(UPDATABLE)}")
    results = _last_report()
    repo = make_copy(work, log)
    timed(["dvc", "repro"], repo, log)
    for name in names:
        results[name] = UPDATABLE[name](repo, work, log)
        results[f"{name}_updated"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    write_results(results)


def write_results(results: dict) -> None:
    """``reports/bench.json`` and the ``BENCHMARKS.md`` rendered from it, replaced together."""
    with StagedFiles() as staged:
        staged.write_text(BENCH_JSON, json.dumps(results, indent=2) + "\n")
        staged.write_text(BENCHMARKS_MD, render_markdown(results))
        staged.commit()


def _last_report() -> dict:
    """The last full run's figures, which an update merges into: refused, before anything is
    measured, when this version could not render it."""
    shown = BENCH_JSON.relative_to(PROJECT_ROOT)
    if not BENCH_JSON.is_file():
        raise SystemExit(f"bench: {shown} is missing; run `make bench` first")
    results = json.loads(BENCH_JSON.read_text())
    try:
        render_markdown(results)
    except KeyError as missing:
        raise SystemExit(
            f"bench: {shown} predates {missing} of this version: "
            "run `make bench` for a full report before updating sections of it"
        ) from None
    return results


def _preset_names(text: str) -> list[str]:
    known = yaml.safe_load((PROJECT_ROOT / "bench/presets.yaml").read_text())
    names = text.split(",")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"no preset named {', '.join(map(repr, unknown))}: expected names of "
            f"bench/presets.yaml ({', '.join(known)})"
        )
    return names


def _seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        seeds = ()
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected distinct non-negative integers separated by commas, e.g. 42,1,2"
        )
    return seeds


def argument_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m bench", name="bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--presets",
        type=_preset_names,
        help="comma-separated preset names of bench/presets.yaml (default: all)",
    )
    parser.add_argument("--skip-presets", action="store_true")
    parser.add_argument(
        "--seeds",
        type=_seed_list,
        default=PRESET_SEEDS,
        help="comma-separated train.seed values each preset is trained with "
        f"(default: {','.join(map(str, PRESET_SEEDS))})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--update-presets",
        action="store_true",
        help="retrain only --presets and update them in reports/bench.json",
    )
    parser.add_argument(
        "--update",
        metavar="SECTIONS",
        help=f"measure only these comma-separated sections ({', '.join(UPDATABLE)}) and "
        "update them in reports/bench.json",
    )
    return parser


def measure_all(args: argparse.Namespace, work: Path, log: Path) -> dict:
    """Every section, in a fresh copy of the project made in ``work``."""
    started = time.perf_counter()
    results = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "make bench",
        "machine": machine(),
        "repeats": args.repeats,
    }
    repo = make_copy(work, log)
    results["pipeline"] = pipeline = bench_pipeline(repo, work, log, args.repeats)
    print(
        f"bench: script {pipeline['script_seconds']:.1f} s, cold repro "
        f"{pipeline['cold_repro_seconds']:.1f} s ({pipeline['cold_repro_ratio']:.2f} x), exp run "
        f"{pipeline['exp_run_seconds']:.1f} s ({pipeline['exp_run_ratio']:.2f} x)",
        file=sys.stderr,
    )
    results["training_overhead"] = bench_training_overhead(repo, work, log, args.repeats)
    results["inference"] = bench_inference(repo, work, log, args.repeats)
    results["serving"] = serving(repo, work, log)
    results["load"] = serving_load(repo, work, log)
    results["int8"] = bench_int8(repo)
    results["page"] = page_latency(repo, work)
    results["sweep"] = bench_sweep(repo, work, log, timed, bench_env())
    results["team"] = team_server(repo, work, log, max(args.repeats, 3))
    if not args.skip_presets:
        results["accuracy"] = bench_presets(repo, work, log, args.presets, args.seeds)
    results["bench_seconds"] = time.perf_counter() - started
    return results


def main() -> None:
    args = argument_parser().parse_args()
    work = Path(tempfile.mkdtemp(prefix="mnist-bench-"))
    log = work / "bench.log"
    print(f"bench: working in {work} (log: {log})", file=sys.stderr)
    if args.update_presets:
        update_presets(work, log, args.presets, args.seeds)
    elif args.update:
        update_sections(args.update.split(","), work, log)
    else:
        results = measure_all(args, work, log)
        write_results(results)
        print(render_markdown(results))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
