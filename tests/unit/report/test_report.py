"""``python -m report`` on hand-made reports committed in a small git + DVC repository
(conftest.py): what the page says, the images beside it, "no change", and bad input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from kernel.paths import PROJECT_ROOT
from report.__main__ import main
from report.folder import INDEX

pytestmark = pytest.mark.usefixtures("no_store")


def review(repo: Path, out: Path, *args: str) -> str:
    """Run the report in-process; the page it wrote."""
    assert main(["-C", str(repo), "--out", str(out), *args]) == 0
    return (out / INDEX).read_text(encoding="utf-8")


def row(page: str, first_cell: str) -> list[str]:
    """The cells of the table row that starts with ``first_cell``."""
    for line in page.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{page}")


def section(page: str, title: str) -> str:
    """The text of a ``##`` section, up to the next one."""
    match = re.search(rf"^## {re.escape(title)}.*?$(.*?)(?=^## |\Z)", page, re.M | re.S)
    assert match, f"no section {title!r} in:\n{page}"
    return match.group(1)


@pytest.fixture(scope="module")
def change_page(review_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The workspace (branch ``change``) against its merge base with main (the baseline)."""
    out = tmp_path_factory.mktemp("out") / "review"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        return review(review_repo, out), out


def test_the_params_that_changed_old_to_new(change_page) -> None:
    page, _ = change_page
    params = section(page, "Params that changed")
    assert row(params, "`train.hidden_units`")[1:] == ["[512]", "[128]"]
    assert row(params, "`train.dropout`")[1:] == ["0.3", "0.0"]
    assert "train.epochs" not in params, "an unchanged param is not listed"


def test_metrics_with_signed_deltas_and_which_way_is_better(change_page) -> None:
    page, _ = change_page
    metrics = section(page, "Test metrics")
    assert row(metrics, "`accuracy`")[1:] == ["95.00 %", "93.00 %", "-2.00 pts", "✘ worse"]
    assert row(metrics, "`loss`")[1:] == ["0.2", "0.25", "+0.05", "✘ worse"]
    assert row(metrics, "`int8_accuracy`")[1:] == ["94.90 %", "92.90 %", "-2.00 pts", "✘ worse"]
    assert "**Summary:** test accuracy 95.00 % → 93.00 % (-2.00 pts, worse)" in page


def test_a_lower_loss_is_better(review_repo: Path, tmp_path: Path) -> None:
    page = review(review_repo, tmp_path / "out", "--rev", "better", "--base", "main")
    metrics = section(page, "Test metrics")
    assert row(metrics, "`loss`")[3:] == ["-0.05", "✔ better"]
    assert row(metrics, "`accuracy`")[3:] == ["+2.00 pts", "✔ better"]


def test_both_gates_with_their_figures_and_verdicts(change_page, review_repo, tmp_path) -> None:
    page, _ = change_page
    gates = section(page, "Gates")
    assert row(gates, "**verdict**")[1:] == ["✔ pass", "✔ pass"]
    assert row(gates, "max abs difference of probabilities (≤ 1e-05)")[1:] == [
        "4.2e-07",
        "4.2e-07",
    ]
    assert row(gates, "accuracy drop (≤ 1.00 pts)")[1:] == ["0.10 pts", "0.10 pts"]
    assert row(gates, "argmax agreement (≥ 98.00 %)")[1:] == ["99.50 %", "99.50 %"]

    failing = review(review_repo, tmp_path / "out", "--rev", "better", "--base", "main")
    gates = section(failing, "Gates")
    int8 = gates[gates.index("### int8") :]
    assert row(int8, "**verdict**")[1:] == ["✔ pass", "✘ fail"]
    assert "- This change failed: accuracy drop 0.0200 > 0.0100" in int8
    assert "the int8 gate FAILS" in failing


def test_the_champion_rule_decides_and_says_why(change_page, review_repo, tmp_path) -> None:
    page, _ = change_page
    champion = section(page, "The champion rule")
    assert "**not promoted** (the base stays): test accuracy 93.0000% is below the base's" in (
        champion
    )
    assert "What export recorded in the registry: unknown (no MLflow store at" in champion

    better = review(review_repo, tmp_path / "out", "--rev", "better", "--base", "main")
    assert "**promoted**: test accuracy 97.0000% beats the base's 95.0000%" in better
    assert "the champion rule would promote it" in better


def test_per_digit_f1_changes_above_the_threshold(change_page, review_repo, tmp_path) -> None:
    page, _ = change_page
    digits = section(page, "Per-digit F1")
    assert row(digits, "`f1 of digit 3`")[1:] == ["95.00 %", "90.00 %", "-5.00 pts", "✘ worse"]
    assert "digit 7" not in digits, "0.2 points is under the default threshold of 0.5"
    assert "digit 0" in digits, "every other digit went from 0.95 to 0.93: 2 points"

    fine = review(review_repo, tmp_path / "out", "--f1-threshold", "0.001")
    assert row(section(fine, "Per-digit F1"), "`f1 of digit 7`")[3] == "+0.20 pts"
    coarse = review(review_repo, tmp_path / "out", "--f1-threshold", "0.1")
    assert "No digit's F1 moved by 10 pts or more." in coarse


def test_images_exist_open_and_are_linked_relatively(change_page) -> None:
    page, out = change_page
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert links == ["curves.png", "confusion.png"]
    for link in links:
        with Image.open(out / link) as image:
            image.verify()
        with Image.open(out / link) as image:
            assert image.format == "PNG" and image.width >= 800 and image.height >= 300


def test_sides_runs_and_environment(change_page) -> None:
    page, _ = change_page
    assert re.match(
        r"# Model review: workspace \(on `[0-9a-f]{7}`\) against `[0-9a-f]{7}` \(merge base "
        r"with `main`\)\n",
        page,
    ), page.splitlines()[0]
    assert row(page, "MLflow run")[1:] == ["— (no MLflow store)", "— (no MLflow store)"]
    assert row(page, "Epochs trained")[1:] == ["3", "4"]
    environment = section(page, "Environment")
    for package in ("python", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "mlflow"):
        assert re.search(rf"^\| {package} \| `[^`]+` \|$", environment, re.M), package
    assert row(environment, "dvc")[1].startswith("`3.")


def test_a_revision_against_itself_is_no_change(review_repo: Path, tmp_path: Path) -> None:
    page = review(review_repo, tmp_path / "out", "--rev", "change", "--base", "change")
    assert "**No change**" in page
    assert "| ---: |" not in page, "no table of zeros"
    assert "## Test metrics" not in page and "## Params that changed" not in page
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".gitignore", INDEX]


def test_a_clean_workspace_against_its_commit_is_no_change(repo_copy, git_in, tmp_path) -> None:
    git_in(repo_copy, "checkout", "-q", "main")
    page = review(repo_copy, tmp_path / "out")
    assert "**No change**" in page and "## Test metrics" not in page


def test_an_experiment_name_is_a_revision(repo_copy, git_in, tmp_path) -> None:
    # what `dvc exp run -n narrow` leaves: a commit under refs/exps/… named by the experiment
    git_in(repo_copy, "checkout", "-q", "main")
    change = git_in(repo_copy, "rev-parse", "change")
    base = git_in(repo_copy, "rev-parse", "main")
    ref = f"refs/exps/{base[:2]}/{base[2:]}/narrow"
    git_in(repo_copy, "update-ref", ref, change)
    page = review(repo_copy, tmp_path / "out", "--rev", "narrow")
    assert page.startswith("# Model review: `narrow` (experiment, `")
    assert row(section(page, "Params that changed"), "`train.hidden_units`")[2] == "[128]"


def test_the_review_folder_is_left_out_of_git(change_page, review_repo, git_in) -> None:
    _, out = change_page
    assert (out / ".gitignore").read_text().splitlines()[-1] == "*"


# --- bad input: one line, exit 1, the last review kept --------------------------------------------


def run_report(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "report", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


BAD_INPUT = [
    (
        "unknown-revision",
        ["--rev", "no-such-thing"],
        r"report: error: --rev no-such-thing: unknown revision \(.*\): expected a git commit, "
        r"branch or tag, or an experiment name as `dvc exp show` lists it",
    ),
    (
        "base-without-reports",
        ["--base", "no-results"],
        r"report: error: base `no-results` \(`[0-9a-f]{7}`\) has no reports/metrics\.json: "
        r"expected a commit or experiment with the pipeline's reports committed .*",
    ),
    (
        "workspace-without-a-run",
        [],
        r"report: error: the workspace has no reports/metrics\.json: no pipeline run to review; "
        r"expected `make repro` \(or `dvc pull`\) first, or --rev REV",
    ),
]


@pytest.mark.parametrize(
    ("args", "line"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input_is_one_line_and_keeps_the_last_review(repo_copy, args, line) -> None:
    out = repo_copy.parent / "review"
    first = run_report(repo_copy, "--out", str(out))
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    if not args:
        (repo_copy / "reports" / "metrics.json").unlink()
    done = run_report(repo_copy, "--out", str(out), *args)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert re.fullmatch(line, lines[0]), lines[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".review.")]
    assert leftovers == [], "no staging folder left behind"


def test_an_out_folder_that_is_not_a_review_is_refused(review_repo: Path, tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    done = run_report(review_repo, "--out", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"report: error: --out {tmp_path}: a folder that holds no earlier review (index.md): "
        "expected a new folder or one python -m report wrote, which it replaces whole"
    ]
    assert (tmp_path / "precious.txt").read_text() == "keep me"
