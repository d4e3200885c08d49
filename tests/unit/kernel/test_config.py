"""params.yaml: one negative test per validator; each error is one line naming key and value."""

from __future__ import annotations

import copy
from pathlib import Path

import pydantic
import pytest
import yaml

from factories.data import random_mnist
from factories.params import params_dict
from factories.processes import error_lines, run_module, stage_args
from kernel.atomic import write_npz
from kernel.cli import CommandError
from kernel.params import Params, load_params, parse_params
from kernel.paths import PROJECT_ROOT


def test_the_repository_params_file_loads() -> None:
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert params.fetch.sources and isinstance(params.fetch.sources, tuple)
    assert isinstance(params.train.hidden_units, tuple)
    assert all(isinstance(units, int) for units in params.train.hidden_units)
    assert isinstance(params.fetch.timeout_seconds, float)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        params.train.epochs = 1  # type: ignore[misc]


def test_lists_become_tuples_and_local_path_is_kept() -> None:
    raw = params_dict(
        fetch={"sources": ["local", "pypi"], "local_path": "/data/mnist"},
        train={"architecture": "cnn", "conv_filters": [32, 64]},
    )
    params = parse_params(raw)
    assert params.fetch.sources == ("local", "pypi")
    assert params.fetch.local_path == "/data/mnist"
    assert params.train.conv_filters == (32, 64)


def _set(section: str, key: str, value: object):
    def change(raw: dict) -> None:
        raw[section][key] = value

    return change


def _sets(*changes: tuple[str, str, object]):
    def change(raw: dict) -> None:
        for section, key, value in changes:
            raw[section][key] = value

    return change


def _delete(*path: str):
    def change(raw: dict) -> None:
        target = raw
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return change


def _add_top(key: str, value: object):
    def change(raw: dict) -> None:
        raw[key] = value

    return change


# (id, change to the repository's params, fragments the one-line error must contain)
BAD_PARAMS = [
    ("unknown-top-key", _add_top("trian", {}), ["unknown key trian", "fetch, preprocess, train"]),
    ("unknown-section-key", _set("train", "epoch", 3), ["unknown key train.epoch", "epochs"]),
    ("missing-section", _delete("evaluate"), ["missing key evaluate"]),
    ("missing-key", _delete("train", "epochs"), ["missing key train.epochs"]),
    ("section-not-mapping", _add_top("evaluate", None), ["evaluate = None", "dictionary"]),
    ("epochs-string", _set("train", "epochs", "abc"), ["train.epochs = 'abc'", "integer"]),
    ("epochs-digit-string", _set("train", "epochs", "15"), ["train.epochs = '15'", "integer"]),
    ("epochs-float", _set("train", "epochs", 2.5), ["train.epochs = 2.5", "integer"]),
    ("epochs-zero", _set("train", "epochs", 0), ["train.epochs = 0", ">= 1"]),
    ("batch-norm-int", _set("train", "batch_norm", 1), ["train.batch_norm = 1", "boolean"]),
    ("dropout-bool", _set("train", "dropout", True), ["train.dropout = True", "number"]),
    ("learning-rate-zero", _set("train", "learning_rate", 0), ["train.learning_rate = 0", "> 0"]),
    (
        "learning-rate-negative",
        _set("train", "learning_rate", -0.01),
        ["train.learning_rate = -0.01", "> 0"],
    ),
    (
        "learning-rate-huge",
        _set("train", "learning_rate", 11.0),
        ["train.learning_rate = 11.0", "<= 10"],
    ),
    ("dropout-one", _set("train", "dropout", 1.0), ["train.dropout = 1.0", "< 1"]),
    ("shift-too-far", _set("train", "augment_shift", 0.5), ["train.augment_shift = 0.5", "<= 0.3"]),
    (
        "conv-per-block-zero",
        _set("train", "conv_per_block", 0),
        ["train.conv_per_block = 0", ">= 1"],
    ),
    (
        "reduce-lr-negative",
        _set("train", "reduce_lr_patience", -1),
        ["train.reduce_lr_patience = -1", ">= 0"],
    ),
    ("momentum-one", _set("train", "momentum", 1.0), ["train.momentum = 1.0", "< 1"]),
    # the optional training params: each range, and each one used only with its choice
    (
        "rotation-large",
        _set("train", "augment_rotation", 90.0),
        ["train.augment_rotation = 90.0", "<= 45"],
    ),
    ("zoom-negative", _set("train", "augment_zoom", -0.1), ["train.augment_zoom = -0.1", ">= 0"]),
    (
        "elastic-negative",
        _set("train", "augment_elastic", -1.0),
        ["train.augment_elastic = -1.0", ">= 0"],
    ),
    (
        "elastic-huge",
        _set("train", "augment_elastic", 500.0),
        ["train.augment_elastic = 500.0", "<= 100"],
    ),
    (
        "elastic-text",
        _set("train", "augment_elastic", "strong"),
        ["train.augment_elastic = 'strong'", "number"],
    ),
    (
        "smoothing-half",
        _set("train", "label_smoothing", 0.5),
        ["train.label_smoothing = 0.5", "< 0.5"],
    ),
    (
        "schedule-unknown",
        _set("train", "lr_schedule", "step"),
        ["train.lr_schedule = 'step'", "'constant', 'cosine' or 'one_cycle'"],
    ),
    ("ema-one", _set("train", "ema_momentum", 1.0), ["train.ema_momentum = 1.0", "< 1"]),
    (
        "pooling-string",
        _set("train", "global_pooling", "yes"),
        ["train.global_pooling = 'yes'", "boolean"],
    ),
    (
        "weight-decay-without-adamw",
        _set("train", "weight_decay", 0.01),
        ["train.weight_decay = 0.01 is used only by optimizer 'adamw'"],
    ),
    (
        "pooling-in-an-mlp",
        _set("train", "global_pooling", True),
        ["train.global_pooling = true is used only by architecture 'cnn'"],
    ),
    (
        "schedule-with-plateau",
        _sets(("train", "lr_schedule", "cosine"), ("train", "reduce_lr_patience", 2)),
        ["train.lr_schedule = 'cosine'", "reduce_lr_patience = 2"],
    ),
    (
        "ema-with-early-stopping",
        _sets(("train", "ema_momentum", 0.99), ("train", "early_stopping_patience", 3)),
        ["train.ema_momentum = 0.99", "set early_stopping_patience to 0"],
    ),
    ("batch-size-zero", _set("train", "batch_size", 0), ["train.batch_size = 0", ">= 1"]),
    (
        "patience-negative",
        _set("train", "early_stopping_patience", -1),
        ["train.early_stopping_patience = -1", ">= 0"],
    ),
    ("train-seed-negative", _set("train", "seed", -1), ["train.seed = -1", ">= 0"]),
    ("val-size-small", _set("preprocess", "val_size", 5), ["preprocess.val_size = 5", ">= 10"]),
    (
        "val-size-large",
        _set("preprocess", "val_size", 30001),
        ["preprocess.val_size = 30001", "<= 30000"],
    ),
    (
        "preprocess-seed-string",
        _set("preprocess", "seed", "42"),
        ["preprocess.seed = '42'", "integer"],
    ),
    ("opset-low", _set("export", "opset", 12), ["export.opset = 12", ">= 13"]),
    ("opset-high", _set("export", "opset", 22), ["export.opset = 22", "<= 21"]),
    ("tolerance-zero", _set("export", "tolerance", 0.0), ["export.tolerance = 0.0", "> 0"]),
    (
        "agreement-above-one",
        _set("export", "min_agreement", 1.5),
        ["export.min_agreement = 1.5", "<= 1"],
    ),
    (
        "alias-bad",
        _set("export", "alias", "1st choice"),
        ["export.alias = '1st choice'", "a string matching"],
    ),
    (
        "quantize-method-unknown",
        _set("quantize", "method", "float16"),
        [
            "quantize.method = 'float16'",
            "'auto', 'dynamic', 'dynamic_per_channel', "
            "'dynamic_per_channel_fp32_output', 'static' or 'static_fp32_output'",
        ],
    ),
    (
        "calibration-zero",
        _set("quantize", "calibration_images", 0),
        ["quantize.calibration_images = 0", ">= 1"],
    ),
    (
        "calibration-beyond-the-training-split",
        _set("quantize", "calibration_images", 60000),
        ["quantize.calibration_images = 60000", "<= 55000"],
    ),
    ("quantize-seed-negative", _set("quantize", "seed", -1), ["quantize.seed = -1", ">= 0"]),
    (
        "accuracy-drop-above-one",
        _set("quantize", "max_accuracy_drop", 3.0),
        ["quantize.max_accuracy_drop = 3.0", "<= 1"],
    ),
    (
        "int8-agreement-negative",
        _set("quantize", "min_agreement", -0.1),
        ["quantize.min_agreement = -0.1", ">= 0"],
    ),
    (
        "probability-diff-text",
        _set("quantize", "max_probability_diff", "0.1"),
        ["quantize.max_probability_diff = '0.1'", "a valid number"],
    ),
    (
        "int8-alias-bad",
        _set("quantize", "alias", "int 8"),
        ["quantize.alias = 'int 8'", "a string matching"],
    ),
    (
        "int8-alias-taken",
        _set("quantize", "alias", "champion"),
        ["quantize.alias 'champion' is also an export alias", "a name of its own"],
    ),
    (
        "monitor-method-unknown",
        _set("monitor", "drift_method", "ks"),
        ["monitor.drift_method = 'ks'", "'wasserstein', 'psi', 'jensenshannon' or 'hellinger'"],
    ),
    (
        "monitor-window-below-min",
        _set("monitor", "min_requests", 5000),
        ["monitor.min_requests = 5000 is more than monitor.window = 1000"],
    ),
    (
        "monitor-share-above-one",
        _set("monitor", "max_drifted_share", 1.5),
        ["monitor.max_drifted_share = 1.5", "<= 1"],
    ),
    (
        "monitor-keep-pixels-text",
        _set("monitor", "keep_pixels", "yes"),
        ["monitor.keep_pixels = 'yes'", "a valid boolean"],
    ),
    (
        "model-name-empty",
        _set("export", "registered_model_name", ""),
        ["export.registered_model_name = ''", "at least 1 character"],
    ),
    (
        "shown-zero",
        _set("evaluate", "misclassified_shown", 0),
        ["evaluate.misclassified_shown = 0", ">= 1"],
    ),
    (
        "hidden-units-empty",
        _set("train", "hidden_units", []),
        ["train.hidden_units = []", "at least 1 item"],
    ),
    (
        "hidden-units-zero",
        _set("train", "hidden_units", [128, 0]),
        ["train.hidden_units.1 = 0", ">= 1"],
    ),
    (
        "hidden-units-scalar",
        _set("train", "hidden_units", 128),
        ["train.hidden_units = 128", "a list"],
    ),
    (
        "conv-filters-string",
        _set("train", "conv_filters", ["32"]),
        ["train.conv_filters.0 = '32'", "integer"],
    ),
    (
        "optimizer-unknown",
        _set("train", "optimizer", "rmsprop"),
        ["train.optimizer = 'rmsprop'", "'adam', 'adamw' or 'sgd'"],
    ),
    (
        "activation-unknown",
        _set("train", "activation", "softmax"),
        ["train.activation = 'softmax'", "'relu'"],
    ),
    (
        "architecture-unknown",
        _set("train", "architecture", "rnn"),
        ["train.architecture = 'rnn'", "'mlp' or 'cnn'"],
    ),
    (
        "source-unknown",
        _set("fetch", "sources", ["pypi", "s3"]),
        ["fetch.sources.1 = 's3'", "'local', 'keras_cache', 'keras_url' or 'pypi'"],
    ),
    ("sources-empty", _set("fetch", "sources", []), ["fetch.sources = []", "at least 1 item"]),
    ("timeout-zero", _set("fetch", "timeout_seconds", 0), ["fetch.timeout_seconds = 0", "> 0"]),
    (
        "timeout-huge",
        _set("fetch", "timeout_seconds", 301),
        ["fetch.timeout_seconds = 301", "<= 300"],
    ),
    ("local-path-number", _set("fetch", "local_path", 3), ["fetch.local_path = 3", "string"]),
    (
        "local-without-path",
        _set("fetch", "sources", ["local", "pypi"]),
        ["fetch.local_path", "'local'"],
    ),
    ("cnn-without-filters", _set("train", "architecture", "cnn"), ["train.conv_filters", "'cnn'"]),
    # a param that does nothing for the chosen architecture or optimizer keeps its neutral value
    (
        "momentum-with-adam",
        _set("train", "momentum", 0.9),
        ["train.momentum = 0.9", "optimizer 'sgd'", "set it to 0.0"],
    ),
    (
        "conv-filters-with-mlp",
        _set("train", "conv_filters", [32]),
        ["train.conv_filters = [32]", "architecture 'cnn'", "set it to []"],
    ),
    (
        "conv-per-block-with-mlp",
        _set("train", "conv_per_block", 2),
        ["train.conv_per_block = 2", "architecture 'cnn'", "set it to 1"],
    ),
    (
        "local-path-without-local-source",
        _set("fetch", "local_path", "/data/mnist"),
        ["fetch.local_path = '/data/mnist'", "add 'local' to fetch.sources"],
    ),
]


def _every_key() -> list[tuple[str, str]]:
    raw = params_dict()
    return [(section, key) for section, values in raw.items() for key in values]


@pytest.mark.parametrize(("section", "key"), _every_key(), ids=lambda part: part)
def test_every_key_is_required(section: str, key: str) -> None:
    """params.yaml is the only home of the values: removing any key is an error."""
    raw = params_dict()
    del raw[section][key]
    with pytest.raises(CommandError) as caught:
        parse_params(raw)
    assert str(caught.value) == f"params.yaml: missing key {section}.{key}"


def test_the_typed_params_hold_no_defaults() -> None:
    """Every field of every section is required, so no value can hide in the code."""
    for section in Params.model_fields.values():
        assert section.is_required()
        for name, field in section.annotation.model_fields.items():
            assert field.is_required(), f"{section.annotation.__name__}.{name} has a default"


def test_the_choices_admit_their_own_params() -> None:
    sgd = parse_params(params_dict(train={"optimizer": "sgd", "momentum": 0.9}))
    assert sgd.train.momentum == 0.9
    cnn = parse_params(
        params_dict(train={"architecture": "cnn", "conv_filters": [8], "conv_per_block": 2})
    )
    assert cnn.train.conv_per_block == 2


@pytest.mark.parametrize(
    ("change", "fragments"), [case[1:] for case in BAD_PARAMS], ids=[case[0] for case in BAD_PARAMS]
)
def test_bad_params_give_one_line_naming_key_and_value(change, fragments: list[str]) -> None:
    raw = params_dict()
    change(raw)
    with pytest.raises(CommandError) as caught:
        parse_params(raw, "my-params.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("my-params.yaml: ")
    for fragment in fragments:
        assert fragment in message


def test_every_case_starts_from_valid_params() -> None:
    # guards the table above: the unchanged params are valid, so each case tests its one change
    assert parse_params(copy.deepcopy(params_dict()))


def test_several_problems_are_counted_on_the_one_line() -> None:
    raw = params_dict(train={"epochs": 0, "optimizer": "rmsprop"}, export={"opset": 99})
    with pytest.raises(CommandError, match=r"train\.optimizer = 'rmsprop'.*\(and 2 more problem"):
        parse_params(raw)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("fetch:\n  sources: [pypi\n  timeout_seconds: 10\npreprocess: {\n")
    with pytest.raises(CommandError, match=r"params\.yaml: invalid YAML at line \d+, column \d+: "):
        load_params(path)
    path.write_text("fetch:\n  sources: [pypi]\n\tbad: indent\n")
    with pytest.raises(CommandError, match="invalid YAML at line 3, column 1: ") as caught:
        load_params(path)
    assert "\n" not in str(caught.value)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"nope\.yaml: params file not found"):
        load_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- fetch\n- train\n", "list"), ("fetch\n", "str"), ("", "NoneType"), ("42\n", "int")],
)
def test_params_file_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(CommandError, match=f"expected a mapping of sections, got {kind}$"):
        load_params(path)


@pytest.mark.parametrize("stage", ["stages.fetch", "stages.preprocess"])
def test_stage_with_broken_params_exits_with_one_line(tmp_path: Path, stage: str) -> None:
    raw = params_dict(preprocess={"val_size": "many"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    write_npz(tmp_path / "raw.npz", random_mnist())
    before = sorted(tmp_path.iterdir())
    paths = {
        "raw": tmp_path / "raw.npz",
        "prepared": tmp_path / "prepared",
        "data_report": tmp_path / "reports" / "data.json",
    }
    if stage == "stages.fetch":
        paths["raw"] = tmp_path / "out" / "mnist.npz"
    args = stage_args(stage.removeprefix("stages."), paths)
    result = run_module(stage, "--params", tmp_path / "params.yaml", *args, cwd=tmp_path)
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    name = stage.removeprefix("stages.")
    assert lines[0].startswith(f"{name}: error: ")
    assert "preprocess.val_size = 'many'" in lines[0]
    assert result.stdout == ""
    assert sorted(tmp_path.iterdir()) == before  # nothing written
