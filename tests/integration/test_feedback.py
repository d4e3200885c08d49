"""The feedback loop's data: the feedback stage on a store of corrections (as the page's
server writes them), train using its training part at a weight, and evaluate scoring the
drawn part; with no corrections nothing changes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from factories.data import digit_images
from factories.params import write_params
from factories.processes import error_lines, run_module, stage_args
from factories.trained import Workspace, gated_onnx
from kernel.paths import PROJECT_ROOT
from monitor.request_log import image_digest
from stages import evaluate, feedback
from stages.dataset.feedback import load_feedback


def _write_store(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Corrections as the page's server writes them (``feedback.record``), as older ones
    were, without a page id: a file per image digest."""
    folder.mkdir(parents=True, exist_ok=True)
    for image, label in zip(images, labels, strict=True):
        image = image.astype(np.float32)
        digest = image_digest(image)
        record = {
            "digest": digest, "label": int(label), "answer": int((label + 1) % 10),
            "model": "mnist-digits", "version": "1", "alias": "champion",
            "time": "2026-12-06T12:00:00Z", "image": [float(v) for v in image.ravel()],
        }  # fmt: skip
        (folder / f"{digest}.json").write_text(json.dumps(record))


def _gather(tmp_path: Path, store: Path, name: str = "out", **feedback_params) -> Path:
    params = write_params(
        tmp_path / f"{name}-params.yaml", feedback={"store": str(store), **feedback_params}
    )
    out = tmp_path / name
    feedback.main(
        ["--params", str(params), "--out", str(out / "feedback.npz"),
         "--report", str(out / "feedback.json")]
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def drawn_store(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    images, labels = digit_images(60, seed=21)
    store = tmp_path_factory.mktemp("store") / "feedback"
    _write_store(store, images, labels)
    return store, images, labels


def test_the_store_becomes_a_split_of_images_each_on_one_side(tmp_path, drawn_store) -> None:
    store, images, labels = drawn_store
    out = _gather(tmp_path, store)
    parts = load_feedback(out / "feedback.npz")
    report = json.loads((out / "feedback.json").read_text())
    (x_train, y_train), (x_drawn, y_drawn) = parts["train"], parts["drawn"]
    assert len(y_train) + len(y_drawn) == 60 and 8 <= len(y_drawn) <= 30  # drawn_share 0.3
    assert report["train"]["images"] == len(y_train) and report["drawn"]["images"] == len(y_drawn)
    assert report["corrections"] == 60 and report["confirmations"] == 0
    assert sum(report["drawn"]["per_digit"].values()) == len(y_drawn)
    seen_train = {hashlib.sha256(x.tobytes()).hexdigest() for x in x_train}
    seen_drawn = {hashlib.sha256(x.tobytes()).hexdigest() for x in x_drawn}
    assert not seen_train & seen_drawn, "no image on both sides"
    by_image = {
        hashlib.sha256(x.tobytes()).hexdigest(): y for x, y in zip(images, labels, strict=True)
    }
    for x, y in [*zip(x_train, y_train, strict=True), *zip(x_drawn, y_drawn, strict=True)]:
        assert by_image[hashlib.sha256(x.tobytes()).hexdigest()] == y, "each keeps its label"


def test_same_store_and_params_give_the_same_bytes_and_a_seed_another_split(
    tmp_path, drawn_store
) -> None:
    store, _, _ = drawn_store
    first, again = _gather(tmp_path, store, "first"), _gather(tmp_path, store, "again")
    for name in ("feedback.npz", "feedback.json"):
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    other = _gather(tmp_path, store, "other", seed=7)
    assert (other / "feedback.npz").read_bytes() != (first / "feedback.npz").read_bytes()
    # one more correction moves no earlier image from one side to the other
    images, labels = digit_images(5, seed=99)
    grown = tmp_path / "grown"
    _write_store(grown, *drawn_store[1:])
    _write_store(grown, images, labels)
    before = load_feedback(first / "feedback.npz")
    after = load_feedback(_gather(tmp_path, grown, "grown-out") / "feedback.npz")
    for part in ("train", "drawn"):
        kept = {x.tobytes() for x in after[part][0]}
        assert all(x.tobytes() in kept for x in before[part][0]), part


def test_an_empty_store_gives_empty_parts_the_bytes_stage_args_hands_every_stage(
    tmp_path,
) -> None:
    from factories.processes import empty_feedback

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no corrections yet\n")
    out = _gather(tmp_path, empty)
    assert (out / "feedback.npz").read_bytes() == empty_feedback().read_bytes()
    parts = load_feedback(out / "feedback.npz")
    assert all(len(y) == 0 for _, y in parts.values())


def _page_store(tmp_path: Path, monkeypatch, count: int):
    """A store as the page's server leaves it: ``count`` corrections waiting for review."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    from demo.feedback import Correction
    from feedback.store import FeedbackStore
    from monitor.request_log import ServedModel

    store = FeedbackStore(tmp_path / "feedback")
    store.folder.mkdir()
    (store.folder / "README.md").write_text("# The feedback store\n")
    images, labels = digit_images(count, seed=5)
    model = ServedModel("mnist-digits", "1", "champion")
    for image, label in zip(images, labels, strict=True):
        page = "an-id-the-server-handed-out-0001"
        correction = Correction(page, model, image.astype(np.float32), 0, int(label))
        assert store.keep(correction.record())
    return store


def test_the_stage_reads_accepted_corrections_only(tmp_path, monkeypatch) -> None:
    """Waiting corrections change nothing: the stage's outputs are the empty store's, byte for
    byte (the committed report's); once a person accepts some, those and only those are in."""
    from factories.processes import empty_feedback

    store = _page_store(tmp_path, monkeypatch, 6)
    from demo import review  # demo/ is run from the checkout: _page_store put it on the path

    out = _gather(tmp_path, store.folder, "waiting")
    assert (out / "feedback.npz").read_bytes() == empty_feedback().read_bytes()
    committed = (PROJECT_ROOT / "reports" / "feedback.json").read_bytes()
    assert (out / "feedback.json").read_bytes() == committed
    chosen = review.waiting(store)[:2]
    assert review.accept(store, chosen) == 2
    report = json.loads((_gather(tmp_path, store.folder, "accepted") / "feedback.json").read_text())
    assert report["train"]["images"] + report["drawn"]["images"] == 2
    assert report["corrections"] + report["confirmations"] == 2
    assert store.pending_count() == 4


def test_waiting_corrections_leave_the_stages_dvc_inputs_as_they_were(
    tmp_path, monkeypatch
) -> None:
    """The pending folder tells DVC (and git) to pass it by: a stage whose input is the
    store is not changed by what waits there, and is by what is accepted."""
    store = _page_store(tmp_path, monkeypatch, 2)
    from demo import review  # demo/ is run from the checkout: _page_store put it on the path

    pending = store.pending.rename(tmp_path / "aside")  # the store as it was before the page
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  gather:\n    cmd: ls feedback > out.txt\n    deps: [feedback]\n"
        "    outs: [out.txt]\n"
    )
    dvc = [sys.executable, "-m", "dvc"]
    for args in (["init", "--no-scm", "-q"], ["repro", "-q"]):
        done = subprocess.run([*dvc, *args], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    pending.rename(store.pending)

    def status() -> str:
        done = subprocess.run([*dvc, "status"], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "up to date" in status()
    review.accept(store, review.waiting(store)[:1])
    assert "modified:           feedback" in status()


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("not json", "not a correction the page's server wrote"),
        (
            json.dumps({"digest": "a" * 32, "label": 1, "answer": 1, "image": [0]}),
            "(image has 1 values; expected a list of 784 numbers)",
        ),
        (
            json.dumps({"digest": "b" * 32, "label": 1, "answer": 1, "image": [0] * 784}),
            "(the file is not named by the digest it holds",
        ),
    ],
)
def test_a_file_that_is_no_correction_is_one_line(tmp_path, content, said) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / f"{'a' * 32}.json").write_text(content)
    params = write_params(tmp_path / "params.yaml", feedback={"store": str(store)})
    done = run_module(
        "stages.feedback", "--params", params, "--out", tmp_path / "f.npz",
        "--report", tmp_path / "f.json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    (line,) = error_lines(done.stderr)
    assert line.startswith(f"feedback: error: {store / ('a' * 32)}.json: ") and said in line, line
    assert not (tmp_path / "f.npz").exists()


def test_corrections_where_the_store_used_to_be_stop_the_stage_with_the_command_to_move_them(
    tmp_path, drawn_store
) -> None:
    """An accepted correction left in the project's old ``feedback/`` folder would silently
    be missing from the data: the stage names the command that moves it instead."""
    old = tmp_path / "feedback"
    old.mkdir()
    (old / "__init__.py").write_text("")  # the code that lives there now is no correction
    store = tmp_path / "data" / "feedback-store"
    store.mkdir(parents=True)
    params = write_params(tmp_path / "params.yaml", feedback={"store": str(store)})
    argv = ["--params", params, "--out", tmp_path / "f.npz", "--report", tmp_path / "f.json"]
    assert run_module("stages.feedback", *argv, cwd=tmp_path).returncode == 0
    (tmp_path / "f.npz").unlink()
    accepted = next(drawn_store[0].glob("*.json"))
    (old / accepted.name).write_bytes(accepted.read_bytes())
    done = run_module("stages.feedback", *argv, cwd=tmp_path)
    assert done.returncode == 1
    assert error_lines(done.stderr) == [
        f"feedback: error: corrections are still in {old}/, where the feedback store used to "
        f"be (1 accepted, 0 waiting, 0 dropped); the store is {store}/ now: move them there "
        "with python -m demo.feedback move-store"
    ]
    assert not (tmp_path / "f.npz").exists()


def test_evaluate_scores_the_drawn_part_and_logs_it(
    tiny_trained: Workspace, tmp_path, drawn_store
) -> None:
    import mlflow

    store = drawn_store[0]
    gathered = _gather(tmp_path, store)
    drawn_y = load_feedback(gathered / "feedback.npz")["drawn"][1]
    handed_off = gated_onnx(tiny_trained, tmp_path / "model.onnx")
    out = tmp_path / "reports"
    paths = {
        "onnx_model": handed_off, "prepared": tiny_trained.data_dir,
        "history": tiny_trained.history, "run_file": tiny_trained.run_file,
        "metrics": out / "metrics.json", "classes": out / "classes.json",
        "confusion": out / "confusion.csv", "figures": out / "figures",
        "feedback_data": gathered / "feedback.npz",
    }  # fmt: skip
    with tiny_trained.store():
        evaluate.main(["--params", str(tiny_trained.params), *stage_args("evaluate", paths)])
        run = mlflow.get_run(tiny_trained.ref.run_id)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["drawn"]["images"] == len(drawn_y)
    assert 0 <= metrics["drawn"]["accuracy"] <= 1
    assert run.data.metrics["test_drawn/accuracy"] == pytest.approx(metrics["drawn"]["accuracy"])
    assert run.data.metrics["test_drawn/images"] == len(drawn_y)


def _weights(path: Path) -> list[np.ndarray]:
    from stages.model.keras_io import load_keras_model

    return load_keras_model(path).get_weights()


def test_train_uses_the_training_part_only_when_weighted_and_records_the_set(
    tiny_trained: Workspace, tmp_path, drawn_store
) -> None:
    import mlflow
    import yaml

    from stages import train
    from stages.run_record.runs import locate_run

    gathered = _gather(tmp_path, drawn_store[0]) / "feedback.npz"
    trained_images = len(load_feedback(gathered)["train"][1])
    results = {}
    for weight in (0.0, 2.0):
        raw = yaml.safe_load(tiny_trained.params.read_text())
        raw["feedback"]["train_weight"] = weight
        params = tmp_path / f"params-{weight}.yaml"
        params.write_text(yaml.safe_dump(raw, sort_keys=False))
        out = tmp_path / f"trained-{weight}"
        paths = {
            "prepared": tiny_trained.data_dir, "model": out / "model.keras",
            "history": out / "history.csv", "run_file": out / "run.json",
            "feedback_data": gathered,
        }  # fmt: skip
        with tiny_trained.store():
            train.main(["--params", str(params), *stage_args("train", paths)])
            ref = locate_run(out / "run.json", tiny_trained.uri)
            results[weight] = (out / "model.keras", mlflow.get_run(ref.run_id).data.tags)
    (unweighted, plain_tags), (weighted, weighted_tags) = results[0.0], results[2.0]
    # in one process Keras numbers its layers on (dense_1, ...), so the files' bytes differ;
    # the weights are what training made (the pipeline's own repro checks the bytes)
    plain, alone, extra = (_weights(path) for path in (unweighted, tiny_trained.model, weighted))
    assert all(np.array_equal(a, b) for a, b in zip(plain, alone, strict=True)), (
        "weight 0: the model of a training without feedback"
    )
    assert not all(np.array_equal(a, b) for a, b in zip(plain, extra, strict=True))
    assert plain_tags["feedback.train_images"] == "0"
    assert weighted_tags["feedback.train_images"] == str(trained_images)
    per_digit = json.loads(weighted_tags["feedback.train_per_digit"])
    assert sum(per_digit.values()) == trained_images
    report = json.loads((gathered.parent / "feedback.json").read_text())
    assert weighted_tags["feedback.digest"] == plain_tags["feedback.digest"] == report["digest"]
