"""``python -m demo.feedback review``: what waits is listed with its digest, label, answer, time
and page id; accepted corrections move into the store (where the feedback stage reads them),
dropped ones out of the way for good; a choice that names nothing waiting, or a file that is
no correction, is one error line, exit status 1, and nothing moved."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest

from factories.params import write_params
from factories.processes import error_lines, run_module
from feedback.store import FeedbackStore
from kernel.cli import run_command
from kernel.paths import PROJECT_ROOT
from monitor.request_log import ServedModel

FP32 = ServedModel("mnist-digits", "4", "champion")


def _image(row: int) -> np.ndarray:
    image = np.zeros((28, 28), dtype=np.float32)
    image[row : row + 12, 10:14] = 255
    return image


@pytest.fixture
def store(tmp_path, feedback):
    """A store with three corrections waiting: two from one page, one from another."""
    kept = FeedbackStore(tmp_path / "store")
    for row, page, label in [(2, "page-a" * 5, 3), (6, "page-a" * 5, 4), (10, "page-b" * 5, 5)]:
        assert kept.keep(feedback.Correction(page, FP32, _image(row), 7, label).record())
    return kept


@pytest.fixture
def review_cli(tmp_path, store, feedback, capsys):
    """Runs ``python -m demo.feedback ARGS`` in this process on the store; exit status, the
    lines of stdout and the lines of stderr."""
    params = write_params(tmp_path / "params.yaml", feedback={"store": str(store.folder)})

    def run(*args: str) -> tuple[int, list[str], list[str]]:
        status = run_command("feedback", feedback.main, ["--params", str(params), *args])
        said = capsys.readouterr()
        return status, said.out.splitlines(), error_lines(said.err)

    return run


def _digests(folder) -> set[str]:
    return {path.stem for path in folder.glob("*.json")}


def test_the_list_names_each_waiting_correction_its_label_answer_time_and_page(
    store, review_cli
) -> None:
    status, out, err = review_cli("review")
    assert (status, err) == (0, [])
    header, *rows, summary = out
    assert header.split() == ["DIGEST", "LABEL", "ANSWER", "TIME", "PAGE", "MODEL"]
    assert len(rows) == 3 and summary.startswith("feedback: 3 waiting for review in ")
    waiting = {json.loads(p.read_text())["digest"]: p for p in store.pending.glob("*.json")}
    for row in rows:
        digest, label, answer, when, page, model, version = row.split()
        record = json.loads(waiting[digest].read_text())
        assert (int(label), int(answer), when, page) == (
            record["label"], 7, record["time"], record["page"],
        )  # fmt: skip
        assert (model, version) == ("mnist-digits", "v4")


def test_accepted_corrections_move_to_the_store_and_dropped_ones_never_come_back(
    store, review_cli, feedback
) -> None:
    waiting = sorted(_digests(store.pending))
    status, out, err = review_cli("review", "accept", waiting[0][:8])
    assert (status, err) == (0, []), err
    assert out == [f"feedback: accepted 1 (1 new in {store.folder}); {store.folder} holds 1 "
                   "accepted, 2 waiting"]  # fmt: skip
    accepted = store.folder / f"{waiting[0]}.json"
    assert stat.S_IMODE(accepted.stat().st_mode) == 0o600
    assert review_cli("review", "drop", waiting[1])[0] == 0
    assert _digests(store.folder) == {waiting[0]}
    assert _digests(store.dropped) == {waiting[1]}
    assert _digests(store.pending) == {waiting[2]}
    # the page sends a dropped image again, or an accepted one: neither waits again
    for row in (2, 6, 10):
        correction = feedback.Correction("page-c" * 5, FP32, _image(row), 7, 1)
        assert store.keep(correction.record()) is None
    assert store.pending_count() == 1


def test_a_page_or_all_are_chosen_at_once(store, review_cli) -> None:
    status, out, _ = review_cli("review", "drop", "--page", "page-b" * 5)
    assert status == 0 and out[0].startswith("feedback: dropped 1;"), out
    status, out, _ = review_cli("review", "accept", "--all")
    assert status == 0 and out[0].startswith("feedback: accepted 2 (2 new"), out
    assert store.count() == 2 and store.pending_count() == 0
    status, out, _ = review_cli("review", "accept", "--all")
    assert status == 0 and out == [f"feedback: nothing waits for review in {store.pending}"]
    status, out, _ = review_cli("review")
    assert status == 0 and out[0].startswith("feedback: nothing waits for review"), out


BAD = [
    (["review", "accept"], "name what to decide on: DIGEST..., --page ID or --all"),
    (["review", "accept", "0123456789abcdef"], "0123456789abcdef': no correction waits"),
    (["review", "accept", "ab"], "give at least 6 characters"),
    (["review", "accept", "--all", "--page", "x"], "--all takes no DIGEST and no --page"),
    (["review", "drop", "--page", "page-z"], "no correction waits from page 'page-z'"),
    (["review", "keep", "--all"], "invalid choice: 'keep'"),
    (["review", "--everything"], "unrecognized arguments: --everything"),
    (["review", "--all"], "say accept or drop before what to decide on"),
    (["judge"], "invalid choice: 'judge'"),
]


@pytest.mark.parametrize(("args", "said"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_error_line_and_moves_nothing(store, review_cli, args, said) -> None:
    before = sorted(_digests(store.pending))
    status, out, err = review_cli(*args)
    assert status == 1 and out == []
    (line,) = err
    assert line.startswith("feedback: error: ") and said in line, line
    assert sorted(_digests(store.pending)) == before and store.count() == 0


def test_a_file_that_is_no_correction_is_listed_as_such_and_not_accepted(store, review_cli) -> None:
    bad = store.pending / f"{'f' * 32}.json"
    bad.write_text('{"digest": "' + "f" * 32 + '", "label": 1, "answer": 2, "image": [1e999]}')
    status, out, _ = review_cli("review")
    listed = f"{'f' * 32}  not a correction: image has 1 values; expected a list of 784 numbers"
    assert status == 0 and listed in out, out
    status, out, err = review_cli("review", "accept", "--all")
    assert status == 1 and out == []
    (line,) = err
    assert f"feedback: error: {'f' * 32}: not a correction the page's server wrote" in line
    assert store.count() == 0, "nothing accepted, not even the good ones"
    assert review_cli("review", "drop", "f" * 32)[0] == 0


def test_the_command_line_says_one_line_and_exits_1(tmp_path, store) -> None:
    params = write_params(tmp_path / "params.yaml", feedback={"store": str(store.folder)})
    done = run_module(
        "demo.feedback", "--params", params, "review", "accept", "nope-nope", cwd=PROJECT_ROOT
    )
    assert done.returncode == 1 and done.stdout == ""
    assert error_lines(done.stderr) == [
        "feedback: error: 'nope-nope': no correction waits under that digest "
        "(python -m demo.feedback review)"
    ]


def _old_store(root, store: FeedbackStore) -> dict[str, set[str]]:
    """Corrections left where the store used to be (``feedback/`` beside params.yaml): the
    waiting ones of ``store`` moved there, one of them as accepted and one as dropped."""
    old = root / "feedback"
    (old / "pending" / "dropped").mkdir(parents=True)
    for name in (".gitignore", ".dvcignore"):
        (old / "pending" / name).write_text("*\n")
    first, second, third = sorted(_digests(store.pending))
    for digest, part in [(first, ""), (second, "pending"), (third, "pending/dropped")]:
        (store.pending / f"{digest}.json").rename(old / part / f"{digest}.json")
    return {"accepted": {first}, "waiting": {second}, "dropped": {third}}


def test_corrections_where_the_store_used_to_be_stop_review_until_moved(
    tmp_path, store, review_cli
) -> None:
    parts = _old_store(tmp_path, store)
    status, out, err = review_cli("review")
    assert (status, out) == (1, [])
    assert err == [
        f"feedback: error: corrections are still in {tmp_path / 'feedback'}/, where the "
        "feedback store used to be (1 accepted, 1 waiting, 1 dropped); the store is "
        f"{store.folder}/ now: move them there with python -m demo.feedback move-store"
    ]
    status, out, err = review_cli("move-store")
    assert (status, err) == (0, [])
    assert out == [f"feedback: moved 3 corrections from {tmp_path / 'feedback'} to {store.folder}"]
    assert _digests(store.folder) == parts["accepted"]
    assert _digests(store.pending) == parts["waiting"]
    assert _digests(store.dropped) == parts["dropped"]
    assert not (tmp_path / "feedback").exists() or not any((tmp_path / "feedback").iterdir())
    status, out, _ = review_cli("review")
    assert status == 0 and out[-1].startswith("feedback: 1 waiting for review"), out
    assert review_cli("move-store")[1] == [
        f"feedback: nothing to move: {tmp_path / 'feedback'} holds no corrections"
    ]
