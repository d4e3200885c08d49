"""Typed, frozen views of ``params.yaml``: one pydantic model per section.

Every value is checked before a stage does any work. A bad file is reported as
one line naming the key, the value and what was expected.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from kernel.cli import EXIT_USAGE, CommandError, report_error

DEFAULT_PARAMS_FILE = "params.yaml"

SourceName = Literal["local", "keras_cache", "keras_url", "pypi"]
Activation = Literal["relu", "tanh", "sigmoid", "elu", "selu", "gelu", "swish"]
Positive = Annotated[int, Field(ge=1)]


def _list_to_tuple(value: Any) -> Any:
    # YAML gives lists; the frozen sections hold tuples. Elements stay strictly typed.
    return tuple(value) if isinstance(value, list) else value


def _frozen_list(item: Any) -> Any:
    return Annotated[tuple[item, ...], BeforeValidator(_list_to_tuple)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FetchParams(_Section):
    sources: _frozen_list(SourceName) = Field(min_length=1)
    local_path: str | None
    timeout_seconds: float = Field(gt=0, le=300)
    keras_url: str = Field(pattern=r"^https?://\S+$")

    @model_validator(mode="after")
    def _local_path_with_local_source(self) -> FetchParams:
        if "local" in self.sources and not self.local_path:
            raise ValueError("source 'local' needs fetch.local_path (a folder or file)")
        if self.local_path and "local" not in self.sources:
            raise ValueError(
                f"fetch.local_path = {self.local_path!r} is used only with source "
                "'local': add 'local' to fetch.sources, or set local_path: null"
            )
        return self


class PreprocessParams(_Section):
    val_size: int = Field(ge=10, le=30000)
    seed: int = Field(ge=0)


class TrainParams(_Section):
    architecture: Literal["mlp", "cnn"]
    hidden_units: _frozen_list(Positive) = Field(min_length=1)
    conv_filters: _frozen_list(Positive)
    conv_per_block: int = Field(ge=1, le=3)
    activation: Activation
    # random shifts of the training images, as a fraction of their size; 0: none
    augment_shift: float = Field(ge=0, le=0.3)
    dropout: float = Field(ge=0, lt=1)
    batch_norm: bool
    optimizer: Literal["adam", "adamw", "sgd"]
    learning_rate: float = Field(gt=0, le=10)
    momentum: float = Field(ge=0, lt=1)
    batch_size: int = Field(ge=1, le=65536)
    epochs: int = Field(ge=1, le=1000)
    early_stopping_patience: int = Field(ge=0, le=1000)
    # halve the learning rate after this many epochs without a better val_loss; 0: never
    reduce_lr_patience: int = Field(ge=0, le=1000)
    seed: int = Field(ge=0)
    experiment_name: str = Field(min_length=1)
    # random rotations (degrees either way) and zooms (fraction either way) of the training
    # images, in fit only, as the shifts are
    augment_rotation: float = Field(ge=0, le=45)
    augment_zoom: float = Field(ge=0, le=0.3)
    # elastic distortion of the training images: the strength (alpha, in pixels) of a smooth
    # random displacement field, Gaussian-smoothed with sigma 4 px (Simard et al. 2003 use
    # 34); 0: none
    augment_elastic: float = Field(ge=0, le=100)
    # the targets' share spread over the other classes (0: one-hot targets)
    label_smoothing: float = Field(ge=0, lt=0.5)
    # constant; cosine (learning_rate decays to 0 over the fit); one_cycle (a warm-up from
    # learning_rate / 25 over the first 30 % of the steps, then the cosine decay)
    lr_schedule: Literal["constant", "cosine", "one_cycle"]
    # AdamW's decoupled weight decay (optimizer adamw only)
    weight_decay: float = Field(ge=0, le=1)
    # the weights' exponential moving average kept by the optimizer and used at the end of
    # the fit; 0: none
    ema_momentum: float = Field(ge=0, lt=1)
    # the CNN's features averaged over the image (GlobalAveragePooling2D) instead of flattened
    global_pooling: bool

    @model_validator(mode="after")
    def _params_fit_the_choices(self) -> TrainParams:
        # A param that does nothing for the chosen architecture or optimizer must keep its
        # neutral value, so a run's logged params never claim an effect it did not have.
        if self.architecture == "cnn" and not self.conv_filters:
            raise ValueError("architecture 'cnn' needs a non-empty train.conv_filters list")
        if self.architecture == "mlp" and self.conv_filters:
            raise ValueError(
                f"train.conv_filters = {list(self.conv_filters)} is used only by "
                "architecture 'cnn': set it to [] or architecture: cnn"
            )
        if self.architecture == "mlp" and self.conv_per_block != 1:
            raise ValueError(
                f"train.conv_per_block = {self.conv_per_block} is used only by "
                "architecture 'cnn': set it to 1 or architecture: cnn"
            )
        if self.optimizer != "sgd" and self.momentum != 0:
            raise ValueError(
                f"train.momentum = {self.momentum} is used only by optimizer "
                f"'sgd', not {self.optimizer!r}: set it to 0.0 or optimizer: sgd"
            )
        if self.optimizer != "adamw" and self.weight_decay != 0:
            raise ValueError(
                f"train.weight_decay = {self.weight_decay} is used only by optimizer 'adamw', "
                f"not {self.optimizer!r}: set it to 0.0 or optimizer: adamw"
            )
        if self.architecture == "mlp" and self.global_pooling:
            raise ValueError(
                "train.global_pooling = true is used only by architecture 'cnn': set it to "
                "false or architecture: cnn"
            )
        if self.lr_schedule != "constant" and self.reduce_lr_patience != 0:
            raise ValueError(
                f"train.lr_schedule = {self.lr_schedule!r} sets the learning rate at every "
                f"step, so train.reduce_lr_patience = {self.reduce_lr_patience} could not "
                "lower it: set reduce_lr_patience to 0 or lr_schedule: constant"
            )
        if self.ema_momentum > 0 and self.early_stopping_patience > 0:
            raise ValueError(
                f"train.ema_momentum = {self.ema_momentum} keeps the weights' average for the "
                "end of the fit, which early stopping's restored best epoch would replace: "
                "set early_stopping_patience to 0 or ema_momentum to 0.0"
            )
        return self


class EvaluateParams(_Section):
    misclassified_shown: int = Field(ge=1, le=100)


class ExportParams(_Section):
    opset: int = Field(ge=13, le=21)
    tolerance: float = Field(gt=0, le=1)
    min_agreement: float = Field(gt=0, le=1)
    registered_model_name: str = Field(min_length=1)
    alias: str = Field(min_length=1, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    champion_alias: str = Field(min_length=1, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    # with a drawn test set: how much worse than the champion a candidate may be on one set
    # (MNIST's or the drawn one) while strictly better on the other, as an accuracy fraction
    promotion_tolerance: float = Field(ge=0, le=0.1)

    @model_validator(mode="after")
    def _two_aliases(self) -> ExportParams:
        if self.alias == self.champion_alias:
            raise ValueError(
                f"export.alias and export.champion_alias are both {self.alias!r}: the newest "
                "model and the one to deploy need two names"
            )
        return self


QuantizationMethod = Literal[
    "auto",
    "dynamic",
    "dynamic_per_channel",
    "dynamic_per_channel_fp32_output",
    "static",
    "static_fp32_output",
]
Fraction = Annotated[float, Field(ge=0, le=1)]


class QuantizeParams(_Section):
    method: QuantizationMethod
    calibration_images: int = Field(ge=1, le=55000)
    seed: int = Field(ge=0)
    max_accuracy_drop: Fraction
    min_agreement: Fraction
    max_probability_diff: Fraction
    alias: str = Field(min_length=1, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")


class FeedbackParams(_Section):
    """People's corrections from the page: where they are stored, how they are split and used."""

    store: str = Field(min_length=1)
    drawn_share: float = Field(gt=0, lt=1)
    seed: int = Field(ge=0)
    train_weight: float = Field(ge=0, le=100)
    experiment_name: str = Field(min_length=1)


# Evidently's drift scores that are distances: a descriptor drifted when its score >= threshold
DriftMethod = Literal["wasserstein", "psi", "jensenshannon", "hellinger"]


class MonitorParams(_Section):
    """The request log of the served model and the page, and the drift report over it."""

    log_dir: str = Field(min_length=1)
    keep_pixels: bool
    rotate_mb: int = Field(ge=1, le=4096)
    keep_days: int = Field(ge=0)
    window: int = Field(ge=1)
    min_requests: int = Field(ge=10)
    reference_images: int = Field(ge=100, le=55000)
    seed: int = Field(ge=0)
    drift_method: DriftMethod
    drift_threshold: float = Field(gt=0, le=10)
    max_drifted_share: float = Field(gt=0, le=1)
    max_prediction_distance: float = Field(gt=0, le=1)
    experiment_name: str = Field(min_length=1)

    @model_validator(mode="after")
    def _enough_for_the_window(self) -> MonitorParams:
        if self.min_requests > self.window:
            raise ValueError(
                f"monitor.min_requests = {self.min_requests} is more than monitor.window = "
                f"{self.window}: no window could ever be judged"
            )
        return self


class Params(_Section):
    fetch: FetchParams
    preprocess: PreprocessParams
    train: TrainParams
    evaluate: EvaluateParams
    export: ExportParams
    quantize: QuantizeParams
    feedback: FeedbackParams
    monitor: MonitorParams

    @model_validator(mode="after")
    def _int8_alias_of_its_own(self) -> Params:
        taken = {self.export.alias, self.export.champion_alias}
        if self.quantize.alias in taken:
            raise ValueError(
                f"quantize.alias {self.quantize.alias!r} is also an export alias: the int8 "
                "model needs a name of its own in the registry"
            )
        return self


_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type):
            return []
        model = field.annotation
    return list(model.model_fields)


def _expectation(error: dict[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind in _BOUNDS:
        sign, name = _BOUNDS[kind]
        return f"a number {sign} {ctx[name]}"
    if kind == "too_short":
        return f"at least {ctx['min_length']} item(s)"
    if kind == "string_too_short":
        return f"a string of at least {ctx['min_length']} character(s)"
    if kind == "string_pattern_mismatch":
        return f"a string matching {ctx['pattern']}"
    if kind == "tuple_type":
        return "a list"
    message = error["msg"]
    return message.removeprefix("Input should be ").removeprefix("Input should ")


def _describe(error: dict[str, Any], source: str) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(part) for part in loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc))
        return f"{source}: unknown key {key} (expected one of: {allowed})"
    if kind == "missing":
        return f"{source}: missing key {key}"
    if kind == "value_error":
        message = error["msg"].removeprefix("Value error, ")
        return f"{source}: {key}: {message}" if key else f"{source}: {message}"
    value = error.get("input")
    shown = repr(list(value)) if isinstance(value, tuple) else repr(value)  # YAML gave a list
    return f"{source}: {key} = {shown}: expected {_expectation(error)}"


def parse_params(raw: Any, source: str = DEFAULT_PARAMS_FILE) -> Params:
    """Validate already-parsed YAML; raise ``CommandError`` with one line on the first problem."""
    if not isinstance(raw, dict):
        raise CommandError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        errors = err.errors()
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise CommandError(_describe(errors[0], source) + more) from None


_REQUIRED = "the following arguments are required"


class _StageParser(argparse.ArgumentParser):
    """A stage's arguments: its usage names ``python -m stages.<name>``, and a usage error is
    one line, ``<name>: error: …`` (as the stage's other failures are), exit status 2.

    An unknown argument is named even when required ones are missing too (plain argparse
    names only the missing ones), with where the stage's knobs live: params.yaml, not flags.
    """

    def __init__(self, module: str, description: str) -> None:
        super().__init__(prog=f"python -m {module}", description=description)
        self.module, self.stage = module, module.rpartition(".")[2]
        self._argv: list[str] | None = None

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        self._argv = sys.argv[1:] if args is None else list(args)
        try:
            return super().parse_args(self._argv, namespace)
        finally:
            self._argv = None

    def error(self, message: str) -> NoReturn:
        if message.startswith(_REQUIRED) and self._argv is not None:
            # argparse stops at the missing ones: an unknown flag beside them is the mistake
            unknown = self._unknown(self._argv)
            if unknown:
                message = f"unrecognized arguments: {' '.join(unknown)}"
        report_error(self.stage, f"{message}; {self._hint(message)}")
        self.exit(EXIT_USAGE)

    def _unknown(self, argv: list[str]) -> list[str]:
        """The arguments this parser does not know, with no argument required."""
        self._argv = None  # a usage error of this second reading is reported as it is
        required = [action for action in self._actions if action.required]
        for action in required:
            action.required = False
        try:
            return self.parse_known_args(argv)[1]
        finally:
            for action in required:
                action.required = True

    def _hint(self, message: str) -> str:
        help_line = f"{self.prog} --help lists its arguments"
        if message.startswith(_REQUIRED):
            return f"dvc.yaml gives them: run the stage with dvc repro {self.stage} ({help_line})"
        if message.startswith("unrecognized arguments"):
            return f"{_param_hint(self.stage, message)} ({help_line})"
        return help_line


def _param_hint(section: str, message: str) -> str:
    """Where a stage's knobs are set, for ``unrecognized arguments: --epochs 5`` and the like:
    the param the flag names (``train.epochs``) if the section has it, else the section."""
    fields = Params.model_fields.get(section)
    keys = fields.annotation.model_fields if fields and isinstance(fields.annotation, type) else {}
    words = message.removeprefix("unrecognized arguments:").split()
    for index, word in enumerate(words):
        flag, _, value = word.partition("=")
        key = flag.lstrip("-").replace("-", "_")
        if not flag.startswith("--") or key not in keys:
            continue
        if not value and index + 1 < len(words) and not words[index + 1].startswith("-"):
            value = words[index + 1]
        setting = f"{section}.{key}={value or 'VALUE'}"
        return (
            f"{section}.{key} is a param, not a flag: set it in params.yaml, or try a value "
            f"with dvc exp run -S {setting}"
        )
    return (
        f"the stage's params are params.yaml's {section} section, not flags: "
        f"dvc exp run -S {section}.KEY=VALUE tries a value"
    )


def stage_argument_parser(description: str, module: str | None = None) -> argparse.ArgumentParser:
    """A stage's argument parser, with ``--params`` (the params file, params.yaml by default).

    ``module`` is the stage's, ``stages.train``; by default the caller's, so that each stage's
    ``main`` gets its name as the user typed it (``python -m stages.train``), not ``train.py``.
    """
    parser = _StageParser(module or _calling_module(), description)
    parser.add_argument("--params", default=DEFAULT_PARAMS_FILE, help="the params file")
    return parser


def _calling_module() -> str:
    """The module whose function called ``stage_argument_parser``: its import name (a stage run
    with ``python -m`` is ``__main__``, its spec keeps the name)."""
    caller = sys._getframe(2).f_globals
    spec = caller.get("__spec__")
    if spec is not None and spec.name:
        return spec.name
    name = caller.get("__name__", "")
    return Path(caller["__file__"]).stem if name == "__main__" and "__file__" in caller else name


def load_params(path: str | os.PathLike[str] = DEFAULT_PARAMS_FILE) -> Params:
    """Read and validate the whole params file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CommandError(f"{path}: params file not found (run from the project root)") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise CommandError(f"{path}: invalid YAML{where}: {problem}") from None
    return parse_params(raw, str(path))
