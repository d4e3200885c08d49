"""Hand a gated ONNX model off: a registry version, its files, then its alias; all or nothing.

Export (the fp32 model) and quantize (the int8 model) hand off the same way. The alias
moves last; until it has moved, any failure (an interrupt included) puts the files back,
withdraws the new version and leaves the alias where it was, so the registry never names
a model whose files are not in place.

One version per model: a version carries the sha256 of its ONNX bytes (``onnx_sha256``),
and a model already handed off under the registered name is not registered again: its
version is reused (the files written, the alias moved to it), and the caller says so.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from kernel.atomic import StagedFiles
from kernel.cli import CommandError
from kernel.signals import deferred_signals
from stages.handoff.onnx_runtime import PROVIDERS, onnx_session, run_onnx
from tracking import registry
from tracking.store import member_name, retry_locked
from tracking.version_tags import VersionTags, handed_off_tags

T = TypeVar("T")


@dataclass(frozen=True)
class Registered:
    """The version that holds the handed-off model; ``reused``: it was registered before."""

    version: str
    reused: bool = False

    def said(self, name: str, alias: str | None, digest: str) -> str:
        to = f" as @{alias}" if alias else ""
        if self.reused:
            return (
                f"{name} v{self.version} already holds this model (onnx sha256 {digest[:12]}…): "
                f"reused it{to}, no new version"
            )
        return f"registered {name} v{self.version}{to}"


def reusable_version(name: str, digest: str) -> str | None:
    """The oldest handed-off version of ``name`` whose ONNX bytes have that sha256."""
    same = [
        version
        for version, tags in registry.all_version_tags(name).items()
        if (record := VersionTags.from_tags(tags)).onnx_sha256 == digest and record.handed_off
    ]
    return min(same, key=int, default=None)


def register_and_write(
    model_bytes: bytes,
    example: np.ndarray,
    name: str,
    alias: str | None,
    tags: VersionTags,
    write_files: Callable[[str, StagedFiles], None],
    *,
    stage: str,
    artifact_name: str = "onnx_model",
) -> Registered:
    """Log ``model_bytes`` to the open run, register it under ``name`` with ``tags``, let
    ``write_files(version, staged)`` stage the files, swap them in and move ``@alias`` (if
    any). A model already handed off under ``name`` keeps its version: only its files are
    written and the alias moved.

    On failure before the alias moved, nothing of a new version remains.
    """
    digest = hashlib.sha256(model_bytes).hexdigest()
    existing = reusable_version(name, digest)
    if existing is not None:
        with deferred_signals(), StagedFiles() as staged:
            write_files(existing, staged)
            staged.commit()
            if alias:
                registry.set_alias(name, alias, existing)
        return Registered(existing, reused=True)
    tags = replace(tags, onnx_sha256=digest)
    session = onnx_session(model_bytes)
    logged = retry_locked(
        lambda: registry.log_onnx_model(
            model_bytes, example, run_onnx(session, example), PROVIDERS, name=artifact_name
        ),
        "logging the ONNX model",
    )
    previous = registry.alias_target(name, alias) if alias else None
    handed_off = False
    try:
        version = registry.register_version(logged.model_uri, name)
        # who exported it: the team server refuses a name other than the sender's
        registry.tag_version(name, version, replace(tags, registered_by=member_name()).to_tags())
        with deferred_signals(), StagedFiles() as staged:
            write_files(version, staged)
            staged.commit()
            if alias:
                registry.set_alias(name, alias, version)
            handed_off = True
    except BaseException:
        if not handed_off:
            with deferred_signals():
                _undo_registration(stage, name, alias, logged.model_uri, previous)
        raise
    # only a version marked so is one @champion may be settled on: until then it may still
    # be withdrawn (champion.settle_champion)
    after_handoff(
        stage,
        f"v{version} is not marked handed off, so no other export settles @champion on it",
        lambda: registry.tag_version(name, version, handed_off_tags()),
    )
    return Registered(version)


def _undo_registration(
    stage: str, name: str, alias: str, model_uri: str, previous: str | None
) -> None:
    try:
        registry.withdraw(name, registry.versions_of(model_uri, name), alias, previous)
    except Exception as err:  # the failure that got us here is the one to report
        print(
            f"{stage}: warning: could not withdraw the new version of {name}: {err}",
            file=sys.stderr,
        )


def after_handoff(stage: str, lost: str, step: Callable[[], T]) -> T | None:
    """A step after the hand-off: the model is in place, so its failure only warns."""
    from mlflow.exceptions import MlflowException

    try:
        return step()
    except (CommandError, MlflowException, OSError) as err:
        message = getattr(err, "message", None) or str(err)
        first = (message.strip().splitlines() or [type(err).__name__])[0]
        print(f"{stage}: warning: {lost}: {first}", file=sys.stderr)
        return None
