"""``python -m report`` on a real tiny pipeline: a committed baseline and a DVC experiment.

A git + DVC copy of the project on rendered digits (factories.pipeline), ``dvc repro``
committed on ``main`` as the baseline, then ``dvc exp run -n narrow`` with a narrower
network and fewer epochs; MLflow on a SQLite store of the test's own, so the page names
both runs and what export's champion rule recorded for each. Minutes of CPU: slow.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from factories.pipeline import rendered_mnist, tiny_pipeline_params
from harness.processes import run_in_repo
from harness.workspace import GIT_IDENTITY, project_copy

pytestmark = pytest.mark.slow


def _ok(done) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import os
    import sys

    root = tmp_path_factory.mktemp("report")
    repo, store = root / "repo", root / "store"
    store.mkdir()
    _, stage_env = rendered_mnist(root, repo)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **stage_env,
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db",
        **GIT_IDENTITY,
    }
    env.pop("DVC_EXP_NAME", None)
    params = tiny_pipeline_params(root, "review")
    params["train"]["epochs"] = 3
    # a model three epochs into 1,200 images has near ties that int8 may flip: a looser gate
    params["quantize"].update({"min_agreement": 0.9, "max_accuracy_drop": 0.05})
    project_copy(repo, env, folders=("report",), params=params)
    _ok(run_in_repo(["git", "branch", "-M", "main"], repo, env))
    _ok(run_in_repo(["dvc", "repro"], repo, env))
    _ok(run_in_repo(["git", "add", "-A"], repo, env))
    _ok(run_in_repo(["git", "commit", "-qm", "baseline results"], repo, env))
    _ok(
        run_in_repo(
            [
                "dvc",
                "exp",
                "run",
                "-n",
                "narrow",
                "-S",
                "train.hidden_units=[16]",
                "-S",
                "train.epochs=2",
            ],
            repo,
            env,
        )
    )
    return {"repo": repo, "env": env, "root": root}


def _report(pipeline: dict, out: Path, *args: str):
    return run_in_repo(
        ["python", "-m", "report", "--out", str(out), *args], pipeline["repo"], pipeline["env"]
    )


def _row(page: str, first_cell: str) -> list[str]:
    for line in page.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{page}")


@pytest.fixture(scope="module")
def narrow_page(pipeline: dict) -> tuple[str, Path]:
    out = pipeline["root"] / "review"
    done = _report(pipeline, out, "--rev", "narrow")
    _ok(done)
    assert done.stderr.strip() == f"report: {out / 'index.md'}: the changes"
    return (out / "index.md").read_text(encoding="utf-8"), out


def test_the_experiment_against_the_baseline(narrow_page, pipeline) -> None:
    page, _ = narrow_page
    assert re.match(
        r"# Model review: `narrow` \(experiment, `[0-9a-f]{7}`\) against `[0-9a-f]{7}` "
        r"\(merge base with `main`\)",
        page,
    )
    assert _row(page, "`train.hidden_units`")[1:] == ["[128]", "[16]"]
    assert _row(page, "`train.epochs`")[1:] == ["3", "2"]
    assert _row(page, "Epochs trained")[1:] == ["3", "2"]


def test_deltas_match_the_committed_figures(narrow_page, pipeline) -> None:
    page, _ = narrow_page
    repo, env = pipeline["repo"], pipeline["env"]
    base = json.loads(run_in_repo(["git", "show", "main:reports/metrics.json"], repo, env).stdout)
    new = json.loads((repo / "reports/metrics.json").read_text())  # dvc exp run left them
    change = (new["accuracy"] - base["accuracy"]) * 100
    cells = _row(page, "`accuracy`")
    assert cells[1] == f"{base['accuracy']:.2%}".replace("%", " %")
    assert cells[2] == f"{new['accuracy']:.2%}".replace("%", " %")
    if change:
        assert cells[3] == f"{change:+.2f} pts"
        assert cells[4] == ("✔ better" if change > 0 else "✘ worse")
    else:
        assert cells[3:] == ["0", "= same"]
    loss = _row(page, "`loss`")
    sign = "+" if new["loss"] > base["loss"] else "-"
    assert loss[3].startswith(sign)
    assert loss[4] == ("✘ worse" if sign == "+" else "✔ better")


def test_gate_figures_are_the_reports(narrow_page, pipeline) -> None:
    page, _ = narrow_page
    parity = json.loads((pipeline["repo"] / "reports/parity.json").read_text())
    int8 = json.loads((pipeline["repo"] / "reports/int8.json").read_text())
    gates = page[page.index("## Gates") : page.index("## The champion rule")]
    verdicts = [line for line in gates.splitlines() if line.startswith("| **verdict**")]
    assert verdicts == ["| **verdict** | ✔ pass | ✔ pass |"] * 2
    assert _row(gates, "ONNX test accuracy")[2] == f"{parity['onnx_accuracy']:.2%}".replace(
        "%", " %"
    )
    assert _row(gates, "int8 test accuracy")[2] == f"{int8['int8_accuracy']:.2%}".replace("%", " %")


def test_the_runs_and_the_champion_decision(narrow_page) -> None:
    page, _ = narrow_page
    base_run, this_run = _row(page, "MLflow run")[1:]
    assert re.fullmatch(r"`workspace-[0-9a-f]{8}`", base_run), base_run
    assert this_run == "`narrow`"
    champion = page[page.index("## The champion rule") : page.index("## Per-digit F1")]
    assert "- Applied to these two, the base as champion and this change as candidate: **" in (
        champion
    )
    decided = re.search(
        r"- This change: `mnist-digits` v(\d+) \(([^)]*)\): export decided "
        r"\*\*(promoted|not promoted)\*\*: "
        r"test accuracy [0-9.]+% (?:beats|ties|is below) champion v1's",
        champion,
    )
    assert decided, champion
    version, aliases, decision = decided.groups()
    promoted = decision == "promoted"
    assert aliases == ("`@candidate`, `@champion`" if promoted else "`@candidate`")
    offline = "**promoted**" if promoted else "**not promoted**"
    assert f"this change as candidate: {offline}" in champion, "the rule agrees with export"
    # the baseline was the first model exported: export made it champion, with that reason
    base_aliases = "no alias" if promoted else "`@champion`"
    now = f"`@champion` is v{version} now" if promoted else "it is `@champion` now"
    expected = (
        f"- Base: `mnist-digits` v1 ({base_aliases}): export decided **promoted**: "
        f"there is no champion yet; {now}."
    )
    assert expected in champion, champion


def test_the_images_open(narrow_page) -> None:
    _, out = narrow_page
    for name in ("curves.png", "confusion.png"):
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG"


def test_the_experiment_against_itself_is_no_change(pipeline) -> None:
    out = pipeline["root"] / "self"
    done = _report(pipeline, out, "--rev", "narrow", "--base", "narrow")
    _ok(done)
    page = (out / "index.md").read_text(encoding="utf-8")
    assert "**No change**" in page and "## Test metrics" not in page
    assert sorted(p.name for p in out.iterdir()) == [".gitignore", "index.md"]
