"""The serving-under-load part of ``BENCHMARKS.md`` (``bench.serving_load``'s figures)."""

from __future__ import annotations

import statistics

LOAD_TARGETS = {
    "answers_per_second_at_32": 3000.0,
    "p99_ms_at_32": 50.0,
    "p50_ms_at_1": 1.5,
    "log_cost_at_1": 1.10,
}


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"  # as bench.report says it


def _run(load: dict, protocol: str, clients: int, logged: bool) -> dict:
    return next(
        run for run in load["runs"]
        if (run["protocol"], run["clients"], run["request_log"]) == (protocol, clients, logged)
    )  # fmt: skip


def load_targets(load: dict) -> list[str]:
    """The rows of the targets table: 32 clients, 1 client and the log's cost, over HTTP."""
    at_32, at_1 = _run(load, "http", 32, True), _run(load, "http", 1, True)
    unlogged_1 = _run(load, "http", 1, False)
    cost = at_1["p50_ms"] / unlogged_1["p50_ms"]
    ok_32 = (
        at_32["answers_per_second"] >= LOAD_TARGETS["answers_per_second_at_32"]
        and at_32["p99_ms"] <= LOAD_TARGETS["p99_ms_at_32"]
    )
    return [
        f"| served under load, 32 clients (HTTP/JSON, request log on): ≥ 3,000 answers/s at "
        f"p99 ≤ 50 ms | {at_32['answers_per_second']:,.0f} answers/s at p99 "
        f"{at_32['p99_ms']:.1f} ms | {_verdict(ok_32)} |",
        f"| served under load, 1 client (HTTP/JSON, request log on): p50 ≤ 1.5 ms | "
        f"{at_1['p50_ms']:.2f} ms | {_verdict(at_1['p50_ms'] <= LOAD_TARGETS['p50_ms_at_1'])} |",
        f"| the request log at 1 client: p50 ≤ 1.10 × without it | {cost:.2f} × "
        f"({at_1['p50_ms']:.3f} vs {unlogged_1['p50_ms']:.3f} ms) | "
        f"{_verdict(cost <= LOAD_TARGETS['log_cost_at_1'])} |",
    ]


def load_section(load: dict, updated: str | None) -> list[str]:
    """The table of every run, what the load tool took, and the overload."""
    lines = [
        "",
        "## Serving under load",
        "",
        f"{load['tool']}, run as `{load['command']}` ({load['seconds_per_run']} s a run; "
        "FastHttpUser for HTTP/JSON, tritonclient's gRPC stubs for gRPC): N clients, each "
        "asking for one image at a time with no pause, against "
        f"{load['server']} on loopback, with the request log and without it (two servers up "
        f"at once, runs alternated). The load tool runs on the same {load['cores']} cores. "
        "Latencies from the moment every client runs; server CPU in cores (CPU seconds over "
        "the run's seconds); peak RSS is the server's high-water mark during the run; log "
        "lines against every answer of the run.",
        "",
        "| Protocol | Clients | Request log | Answers/s | p50 (ms) | p90 (ms) | p99 (ms) | "
        "Errors | Log lines / answers | Server CPU (cores) | Peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in load["runs"]:
        logged = "on" if run["request_log"] else "off"
        lines.append(
            f"| {run['protocol']} | {run['clients']} | {logged} | "
            f"{run['answers_per_second']:,.0f} | {run['p50_ms']:.2f} | {run['p90_ms']:.2f} | "
            f"{run['p99_ms']:.2f} | {run['errors']} | {_log_cell(run)} | "
            f"{run['server_cpu_seconds'] / run['seconds']:.2f} | {run['peak_rss_mb']:.0f} |"
        )
    tool = [100 * run["tool_cpu_seconds"] / run["seconds"] for run in load["runs"]]
    lines += [
        "",
        f"locust itself took {min(tool):.0f}–{max(tool):.0f} % of one core (median "
        f"{statistics.median(tool):.0f} %) over these runs.",
        "",
        *_overload_lines(load["overload"]),
    ]
    if updated:
        lines += ["", f"Measured {updated} with `python -m bench --update load`."]
    return lines


def _log_cell(run: dict) -> str:
    if not run["request_log"]:
        return "–"
    return f"{run['log_lines']:,} / {run['all_answers']:,}"


def _overload_lines(overload: dict) -> list[str]:
    kinds = overload["errors_by_kind"]
    refused = sum(count for kind, count in kinds.items() if kind.startswith("HTTP 503"))
    other = overload["errors"] - refused
    return [
        f"Overload: {overload['clients']} clients over HTTP/JSON (request log on): "
        f"{overload['answers_per_second']:,.0f} answers/s, {refused:,} requests refused at once "
        f"with 503 and Retry-After, {other} other errors; p99 {overload['p99_ms']:.0f} ms, the "
        f"slowest request {overload['slowest_ms']:.0f} ms (the client's timeout: 10 s); the "
        f"server's peak RSS {overload['peak_rss_mb']:.0f} MB; log lines "
        f"{overload['log_lines']:,} for {overload['all_answers']:,} answers.",
    ]
