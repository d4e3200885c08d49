"""``BENCHMARKS.md`` from the results of ``python -m bench``, with each target and its verdict."""

from __future__ import annotations

from bench.report_load import load_section, load_targets

# the 4-trial Ray sweep's wall time before stages shed TensorFlow and MLflow costs
SWEEP_BEFORE_SECONDS = 216.0

TARGETS = {
    "cold_repro_ratio": 1.3,
    "exp_run_ratio": 1.25,
    "noop_repro_seconds": 2.0,
    "sweep_ray_seconds": 0.7 * SWEEP_BEFORE_SECONDS,
    "stage_peak_rss_mb": 1536.0,
    "train_overhead_ratio": 1.15,
    "onnx_vs_keras_throughput": 5.0,
    "onnx_batch1_p50_us": 50.0,
    "predictor_one_png_seconds": 1.0,
    "oip_batch1_p50_ms": 10.0,
    "int8_throughput_ratio": 2.0,
    "int8_accuracy_cost": 0.003,
    "page_stroke_to_answer_ms": 50.0,
    "sweep_ray_vs_queue_ratio": 1.15,
    "team_server_ratio": 1.10,
    "default_accuracy": 0.983,
    "best_mlp_accuracy": 0.993,
    "best_mlp_fit_seconds": 300.0,
    "cnn_accuracy": 0.996,
    "cnn_fit_seconds": 300.0,
    # how far below its target one seed of a preset may be while the mean meets it
    "preset_seed_slack": 0.001,
}


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _at_most(value: float | None, target: float) -> str:
    return "n/a" if value is None else _verdict(value <= target)


def _at_least(value: float | None, target: float) -> str:
    return "n/a" if value is None else _verdict(value >= target)


def render_markdown(results: dict) -> str:
    """``BENCHMARKS.md``: the targets and their verdicts, then each section's figures."""
    lines = [*_header(results), *_targets_section(results)]
    lines += _pipeline_section(results["pipeline"])
    lines += _overhead_section(results["training_overhead"])
    lines += _inference_section(results["inference"])
    if results.get("serving"):
        lines += _serving_section(results["serving"], results.get("serving_updated"))
    if results.get("load"):
        lines += load_section(results["load"], results.get("load_updated"))
    if results.get("int8"):
        lines += _int8_section(results["int8"], results.get("int8_updated"))
    if results.get("sweep"):
        lines += _sweep_section(results["sweep"], results.get("sweep_updated"))
    if results.get("accuracy", {}):
        lines += _accuracy_section(results["accuracy"], results.get("accuracy_updated"))
    return "\n".join(lines) + "\n"


def _header(results: dict) -> list[str]:
    machine = results["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    return [
        "# Benchmarks",
        "",
        f"Measured {results['date']} with `{results['command']}` on {machine['cores']} cores "
        f"({machine['cpu']}), Python {machine['python']}; {versions}. Figures are medians of "
        f"{results['repeats']} repeats unless said otherwise; ratios compare runs made side by "
        "side in the same session. Raw figures: `reports/bench.json`.",
    ]


def _targets_section(results: dict) -> list[str]:
    lines = ["", "## Targets", "", "| Target | Measured | Verdict |", "|---|---|---|"]
    lines += _pipeline_targets(results["pipeline"], results["training_overhead"])
    lines += _inference_targets(results["inference"])
    if results.get("serving"):
        served_p50 = results["serving"]["oip"]["batch1"]["p50_ms"]
        lines.append(
            f"| served (Open Inference Protocol) batch-1 p50 ≤ 10 ms | {served_p50:.2f} ms | "
            f"{_at_most(served_p50, TARGETS['oip_batch1_p50_ms'])} |"
        )
    if results.get("load"):
        lines += load_targets(results["load"])
    if results.get("int8"):
        ratio, cost = _int8_ratio(results["int8"]), _int8_cost(results["int8"])
        ok = ratio >= TARGETS["int8_throughput_ratio"] and cost <= TARGETS["int8_accuracy_cost"]
        lines.append(
            f"| int8 throughput ≥ 2 × fp32 at ≤ 0.3 points accuracy cost | {ratio:.2f} × at "
            f"{cost * 100:+.2f} points | {_verdict(ok)} |"
        )
    if results.get("page"):
        stroke = results["page"]["stroke_to_answer_ms"]
        lines.append(
            f"| page: stroke end to answer ≤ 50 ms (median of {stroke['runs']}) | "
            f"{stroke['median']:.1f} ms (p90 {stroke['p90']:.1f} ms) | "
            f"{_at_most(stroke['median'], TARGETS['page_stroke_to_answer_ms'])} |"
        )
    if results.get("sweep"):
        lines += _sweep_targets(results["sweep"])
    if results.get("team"):
        lines.append(_team_target(results["team"], results.get("team_updated")))
    return lines + _accuracy_targets(results.get("accuracy", {}))


def _pipeline_targets(pipeline: dict, overhead: dict) -> list[str]:
    peak = max(stage["peak_rss_mb"] for stage in pipeline["stages"].values())
    return [
        f"| forced cold `dvc repro`, every stage, ≤ 1.3 × the script | "
        f"{pipeline['cold_repro_ratio']:.2f} × ({pipeline['cold_repro_seconds']:.1f} s vs "
        f"{pipeline['script_seconds']:.1f} s) | "
        f"{_at_most(pipeline['cold_repro_ratio'], TARGETS['cold_repro_ratio'])} |",
        f"| `dvc exp run -S train.dropout=0.25` ≤ 1.25 × the script | "
        f"{pipeline['exp_run_ratio']:.2f} × ({pipeline['exp_run_seconds']:.1f} s vs "
        f"{pipeline['script_seconds']:.1f} s) | "
        f"{_at_most(pipeline['exp_run_ratio'], TARGETS['exp_run_ratio'])} |",
        f"| no-op `dvc repro` ≤ 2 s | {pipeline['noop_repro_seconds']:.1f} s | "
        f"{_at_most(pipeline['noop_repro_seconds'], TARGETS['noop_repro_seconds'])} |",
        f"| every stage's peak RSS ≤ 1.5 GB | {peak:.0f} MB (largest) | "
        f"{_at_most(peak, TARGETS['stage_peak_rss_mb'])} |",
        f"| train stage ≤ 1.15 × the script's fit alone | {overhead['ratio']:.2f} × "
        f"({overhead['stage_seconds']:.1f} s vs {overhead['script_fit_seconds']:.1f} s) | "
        f"{_at_most(overhead['ratio'], TARGETS['train_overhead_ratio'])} |",
    ]


def _inference_targets(inference: dict) -> list[str]:
    batch = inference["batch10000"]
    onnx_p50 = inference["batch1"]["onnxruntime_session"]["p50_us"]
    throughput_ratio = (
        batch["onnxruntime_session"]["images_per_second"]
        / batch["keras_predict_default_batch"]["images_per_second"]
    )
    png = inference["one_png_whole_process"]
    return [
        f"| onnxruntime throughput ≥ 5 × Keras `predict` | {throughput_ratio:.1f} × | "
        f"{_at_least(throughput_ratio, TARGETS['onnx_vs_keras_throughput'])} |",
        f"| onnxruntime batch-1 p50 ≤ 50 µs | {onnx_p50:.0f} µs | "
        f"{_at_most(onnx_p50, TARGETS['onnx_batch1_p50_us'])} |",
        f"| `digits-predict` one PNG ≤ 1 s whole process | {png['digits_predict_seconds']:.2f} s | "
        f"{_at_most(png['digits_predict_seconds'], TARGETS['predictor_one_png_seconds'])} |",
    ]


def _sweep_targets(sweep: dict) -> list[str]:
    return [
        f"| {sweep['trials']}-trial grid on Ray (2 workers) ≤ 1.15 × "
        f"`dvc queue start -j 2` | "
        f"{sweep['ratio']:.2f} × ({sweep['ray_wall_seconds']:.0f} s vs "
        f"{sweep['queue_wall_seconds']:.0f} s) | "
        f"{_at_most(sweep['ratio'], TARGETS['sweep_ray_vs_queue_ratio'])} |",
        f"| the same grid on Ray ≤ 0.7 × its {SWEEP_BEFORE_SECONDS:.0f} s before | "
        f"{sweep['ray_wall_seconds'] / SWEEP_BEFORE_SECONDS:.2f} × "
        f"({sweep['ray_wall_seconds']:.0f} s) | "
        f"{_at_most(sweep['ray_wall_seconds'], TARGETS['sweep_ray_seconds'])} |",
    ]


def _team_target(team: dict, updated: str | None) -> str:
    measured = f"; measured {updated} with `--update team`" if updated else ""
    return (
        f"| train stage on the team server ≤ 1.10 × on the local SQLite store | "
        f"{team['ratio']:.2f} × ({team['server_seconds']:.1f} s vs "
        f"{team['sqlite_seconds']:.1f} s, median of {team['repeats']}{measured}) | "
        f"{_at_most(team['ratio'], TARGETS['team_server_ratio'])} |"
    )


# the presets with a target: (name, its accuracy target, its fit-time target if any, whether
# it is judged over the seeds); the default network's target is the pipeline's own run,
# the one `make repro` reproduces (params.yaml's train.seed, the first of the seeds)
PRESET_TARGETS = (
    ("default", "default_accuracy", None, False),
    ("best-mlp", "best_mlp_accuracy", "best_mlp_fit_seconds", True),
    ("cnn", "cnn_accuracy", "cnn_fit_seconds", True),
)


def _accuracy_targets(accuracy: dict) -> list[str]:
    lines = []
    for name, accuracy_key, time_key, over_seeds in PRESET_TARGETS:
        if name not in accuracy:
            continue
        preset = accuracy[name]
        if not over_seeds and preset.get("runs"):
            preset = preset["runs"][0]
        target, seeds = TARGETS[accuracy_key], len(preset.get("seeds", [None]))
        fit = preset.get("fit_seconds_max") or preset["fit_seconds"] or 0.0
        # every seed within this much of the target, and the mean at it
        lowest = target - TARGETS["preset_seed_slack"]
        ok = (
            preset["test_accuracy"] >= target
            and preset.get("test_accuracy_min", preset["test_accuracy"]) >= lowest
            and (time_key is None or fit <= TARGETS[time_key])
        )
        limit = "" if time_key is None else f" within {TARGETS[time_key] / 60:.0f} min"
        if seeds > 1:
            wanted = f"{limit}, over {seeds} seeds, each ≥ {lowest:.1%}"
            measured = (
                f"{_accuracy_cell(preset)} (worst {preset['test_accuracy_min']:.2%}), "
                f"slowest fit {fit:.0f} s"
            )
        else:
            seed = f" (seed {preset['seed']})" if "seed" in preset else ""
            wanted, measured = limit, f"{preset['test_accuracy']:.2%}{seed} in {fit:.0f} s"
        lines.append(f"| {name} ≥ {target:.1%}{wanted} | {measured} | {_verdict(ok)} |")
    return lines


def _accuracy_cell(preset: dict) -> str:
    """The mean test accuracy, ± its sd over the seeds when there were several."""
    seeds = preset.get("seeds", [])
    if len(seeds) < 2:
        return f"{preset['test_accuracy']:.2%}"
    return f"{preset['test_accuracy']:.2%} ± {preset['test_accuracy_sd'] * 100:.2f}"


def _overhead_section(overhead: dict) -> list[str]:
    lines = [
        "",
        "## Training overhead",
        "",
        f"The train stage against the fit alone of `bench/script.py --fit-only` (the same "
        "model, data, batch size and "
        f"{overhead['epochs']} epochs with validation, no tracking), interleaved, "
        f"{overhead['repeats']} runs each: stage {overhead['stage_seconds']:.1f} s, script "
        f"{overhead['script_fit_seconds']:.1f} s, ratio {overhead['ratio']:.2f}.",
        "",
        "Where the stage's time went (last run, seconds):",
        "",
        "| Phase | Seconds |",
        "|---|---|",
    ]
    for phase, seconds in overhead["stage_phases_last_run"].items():
        lines.append(f"| {phase} | {seconds:.2f} |")
    return lines


def _inference_section(inference: dict) -> list[str]:
    lines = [
        "",
        "## Inference",
        "",
        "| Batch of 1 | p50 (µs) | p99 (µs) | calls |",
        "|---|---|---|---|",
    ]
    for name, row in inference["batch1"].items():
        lines.append(f"| {name} | {row['p50_us']:.0f} | {row['p99_us']:.0f} | {row['calls']} |")
    lines += ["", "| 10,000 test images | seconds | images/s |", "|---|---|---|"]
    for name, row in inference["batch10000"].items():
        lines.append(f"| {name} | {row['seconds']:.3f} | {row['images_per_second']:.0f} |")
    png = inference["one_png_whole_process"]
    return lines + [
        "",
        "One PNG, whole process: `digits-predict` "
        f"{png['digits_predict_seconds']:.2f} s, a Keras script "
        f"{png['keras_script_seconds']:.2f} s.",
    ]


def _accuracy_section(accuracy: dict, updated: str | None) -> list[str]:
    lines = [
        "",
        "## Accuracy (each preset trained once per seed, exported through the parity gate, "
        "then quantized through the int8 gate)",
        "",
        "| Preset | Seeds | Test accuracy, mean ± sd | Fit (s), mean (slowest) | Epochs | "
        "Parity | int8 (method: accuracy, agreement; speed on one thread, × fp32), mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, preset in accuracy.items():
        parity = "passed" if preset["parity_passed"] else "**failed**"
        fit = preset["fit_seconds"] or 0.0
        slowest = preset.get("fit_seconds_max") or fit
        seeds = ", ".join(map(str, preset.get("seeds", []))) or "n/a"
        lines.append(
            f"| {name} | {seeds} | {_accuracy_cell(preset)} | {fit:.0f} ({slowest:.0f}) | "
            f"{preset['epochs_run']} | {parity} | {_int8_cell(preset)} |"
        )
    lines += [
        "",
        "Presets are defined in `bench/presets.yaml`; sd is the sample standard deviation over "
        "the seeds, in points; a gate counts as passed only if it passed for every seed.",
    ]
    if updated:
        lines += [
            "",
            f"Presets last retrained {updated} with "
            "`python -m bench --update-presets --presets NAME`.",
        ]
    return lines


def _measured_with_update(updated: str | None, section: str) -> list[str]:
    """The line saying when ``--update SECTION`` measured a section again, if it did."""
    return ["", f"Measured {updated} with `python -m bench --update {section}`."] if updated else []


def _pipeline_section(pipeline: dict) -> list[str]:
    runs = pipeline["runs"]
    lines = [
        "",
        "## The pipeline against the script it replaces",
        "",
        f"`bench/script.py` is the work a person does by hand: load `mnist.npz`, hold out the "
        f"validation images, fit the default MLP with validation for the {pipeline['epochs']} "
        "epochs the pipeline ran (`model.fit` with its defaults), evaluate, save the `.keras` "
        "file, convert it with tf2onnx and check onnxruntime against Keras on the 10,000 test "
        "images; no tracking. Run interleaved with a forced `dvc repro` of every stage (data "
        "from a local copy, so the network is not timed) and `dvc exp run -S "
        f"train.dropout=0.25` (train, export, evaluate, quantize), {pipeline['repeats']} times "
        "each, in one session on the same data; the medians are compared.",
        "",
        "| | runs (s) | median (s) | × script |",
        "|---|---|---|---|",
        f"| script | {_runs(runs['script'])} | {pipeline['script_seconds']:.1f} | 1.00 |",
        f"| `dvc repro --force` | {_runs(runs['cold_repro'])} | "
        f"{pipeline['cold_repro_seconds']:.1f} | {pipeline['cold_repro_ratio']:.2f} |",
        f"| `dvc exp run -S train.dropout=0.25` | {_runs(runs['exp_run'])} | "
        f"{pipeline['exp_run_seconds']:.1f} | {pipeline['exp_run_ratio']:.2f} |",
        "",
        "Each stage of the forced repro (medians): its wall time, and its fixed cost, from "
        "process start to its first useful work (interpreter, imports, params, the MLflow "
        "store; for train and export, TensorFlow).",
        "",
        "| Stage | Wall (s) | Fixed cost (s) | Peak RSS (MB) |",
        "|---|---|---|---|",
    ]
    for name, stage in pipeline["stages"].items():
        fixed = stage.get("fixed_seconds")
        lines.append(
            f"| {name} | {stage['wall_seconds']:.1f} | "
            f"{'n/a' if fixed is None else f'{fixed:.1f}'} | {stage['peak_rss_mb']:.0f} |"
        )
    lines += ["", f"No-op `dvc repro`: {pipeline['noop_repro_seconds']:.2f} s (median of 3)."]
    return lines


def _runs(values: list[float]) -> str:
    return ", ".join(f"{value:.1f}" for value in values)


def _serving_section(serving: dict, updated: str | None) -> list[str]:
    oip, local = serving["oip"], serving["predictor_in_process"]
    lines = [
        "",
        "## Serving over the Open Inference Protocol",
        "",
        f"{serving['server']} on loopback, asked by tritonclient from a second process (one "
        "connection, one request after another, JSON tensors), alternated with the Predictor "
        "in that process.",
        "",
        "| | batch-1 p50 (ms) | batch-1 p99 (ms) | batch-64 images/s |",
        "|---|---|---|---|",
    ]
    rows = [("served (MLServer)", oip)]
    unlogged = serving.get("oip_unlogged")
    if unlogged:
        rows.append(("served, request log off", unlogged))
    for name, row in (*rows, ("Predictor in process", local)):
        lines.append(
            f"| {name} | {row['batch1']['p50_ms']:.2f} | {row['batch1']['p99_ms']:.2f} | "
            f"{row['batch64']['images_per_second']:.0f} |"
        )
    ratio = oip["batch1"]["p50_ms"] / local["batch1"]["p50_ms"]
    lines += [
        "",
        f"The protocol's cost for one image: {ratio:.0f} × the in-process call. Cold start "
        f"(registry download, MLServer up, model loaded, ready answering) "
        f"{serving['cold_start_seconds']:.1f} s; the server's peak RSS "
        f"{serving['peak_rss_mb']:.0f} MB.",
    ]
    if unlogged:
        cost = oip["batch1"]["p50_ms"] / unlogged["batch1"]["p50_ms"]
        lines += [
            "",
            f"The request log (monitor.request_log) at batch-1 p50: {oip['batch1']['p50_ms']:.2f} "
            f"ms logged against {unlogged['batch1']['p50_ms']:.2f} ms with it off, "
            f"{cost:.2f} × (target ≤ 1.10), both servers up at once and asked in turn.",
        ]
    return lines + _measured_with_update(updated, "serving")


def _int8_cell(preset: dict) -> str:
    if "int8_passed" not in preset:  # measured before the quantize stage existed
        return "n/a"
    if not preset["int8_passed"]:
        return "**failed**"
    cell = f"{preset['int8_method']}: {preset['int8_accuracy']:.2%}, {preset['int8_agreement']:.2%}"
    speedup = preset.get("int8_speedup_1_thread")
    return cell + (f"; {speedup:.2f} ×" if speedup else "")


def _int8_ratio(int8: dict) -> float:
    """Throughput on one thread, what an edge CPU or a busy server gives one model."""
    return int8["int8"]["images_per_second_1_thread"] / int8["fp32"]["images_per_second_1_thread"]


def _int8_cost(int8: dict) -> float:
    return int8["fp32"]["test_accuracy"] - int8["int8"]["test_accuracy"]


def _int8_section(int8: dict, updated: str | None) -> list[str]:
    lines = [
        "",
        "## int8 against fp32 (onnxruntime, 10,000 test images)",
        "",
        "| Model | File (KB) | Test accuracy | images/s, 1 thread | images/s, all cores "
        "| batch-1 p50 (µs) |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("fp32", "int8"):
        row = int8[name]
        lines.append(
            f"| {name} | {row['file_bytes'] / 1024:.0f} | {row['test_accuracy']:.2%} | "
            f"{row['images_per_second_1_thread']:.0f} | {row['images_per_second_all_threads']:.0f} "
            f"| {row['batch1_p50_us']:.0f} |"
        )
    size = int8["fp32"]["file_bytes"] / int8["int8"]["file_bytes"]
    lines += [
        "",
        f"int8 is {size:.1f} × smaller and {_int8_ratio(int8):.2f} × the fp32 throughput on one "
        f"thread; the two agree on {int8['agreement']:.2%} of the test digits (max probability "
        f"difference {int8['max_abs_diff']:.3f}), each image answered on its own. Both were timed "
        "alternately in one process. Dynamic quantization scales activations per batch: the "
        "10,000 test images sent as one batch get the same digit as one by one for "
        f"{int8['int8_one_batch_vs_one_image_agreement']:.2%} of them.",
    ]
    return lines + _measured_with_update(updated, "int8")


def _sweep_section(sweep: dict, updated: str | None) -> list[str]:
    phases = sweep["ray_trial_median_seconds"]
    overhead = sweep["ray_overhead_per_trial_seconds"]
    lines = [
        "",
        "## Sweeps: Ray against the DVC queue",
        "",
        f"The grid `{sweep['grid']}` ({sweep['trials']} trials), first through `dvc exp run "
        f"--queue` and `dvc queue start -j {sweep['workers']}`, then through `python -m sweep "
        f"--workers {sweep['workers']}` on a Ray started for it on 127.0.0.1, trials pushed "
        "to a DVC remote in a local folder, MLflow on the copy's SQLite store.",
        "",
        "| | wall (s) |",
        "|---|---|",
        f"| `dvc queue start -j {sweep['workers']}` | {sweep['queue_wall_seconds']:.1f} |",
        f"| Ray, {sweep['workers']} workers | {sweep['ray_wall_seconds']:.1f} |",
        "",
        "A Ray trial, median seconds per phase:",
        "",
        "| clone + checkout | dvc pull | dvc exp run | dvc exp push |",
        "|---|---|---|---|",
        f"| {phases['clone']:.2f} | {phases['pull']:.2f} | {phases['run']:.1f} | "
        f"{phases['push']:.2f} |",
        "",
        "Overhead per trial beyond its `dvc exp run` (Ray's start, Tune's scheduling, clone, "
        f"pull, push, the refs fetched at the end): {overhead:.1f} s.",
    ]
    return lines + _measured_with_update(updated, "sweep")
