"""What a registered version carries as tags, as one typed record: written by export and
quantize, read by the champion rule and the review report, all through this module.

A version's tags are written in separate calls, each at its own step: what it was
registered with (its precision, test figures and, for an int8 model, where it came from)
with who registered it; ``handed_off`` once its files are in place; the accuracy on a
drawn test set measured after it was registered; the champion rule's decision. Every
value is a string, a float its ``repr`` (so reading gives back the same float). The key
names are part of the store: existing versions carry them, and the team server checks
the authorship keys (``registered_by``, ``promoted_by``, ``promotion.decided_by``)
against the member who sends them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

FP32 = "fp32"
INT8 = "int8"
REGISTERED_BY = "registered_by"
HANDED_OFF = "handed_off"
PROMOTED_BY = "promoted_by"
DECIDED_BY = "promotion.decided_by"
# a version's accuracy on a drawn set measured after it was registered: the tag's name ends
# with the set's digest, so one tag carries both and another set's figure never passes for it
MEASURED_ON_DRAWN = "drawn_accuracy."
# the int8 model's ONNX metadata repeats these tags of its version, in this order
INT8_METADATA_KEYS = (
    "test_accuracy",
    "precision",
    "quantization",
    "fp32_model_sha256",
    "fp32_test_accuracy",
)
# what a record without a champion writes where a champion's figures would be
NO_CHAMPION = "none"


def _float(tags: Mapping[str, str], key: str) -> float | None:
    """The float a tag holds; None when absent, empty or written from None."""
    text = tags.get(key)
    if not text or text in (NO_CHAMPION, "None"):
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"version tag {key}={text!r}: expected a number") from None


def _required(tags: Mapping[str, str], key: str) -> str:
    if key not in tags:
        raise ValueError(f"version tags hold no {key}, which the record beside it needs")
    return tags[key]


@dataclass(frozen=True)
class DrawnFigure:
    """The accuracy on a drawn test set, the set's digest and how many images it holds."""

    accuracy: float
    digest: str
    images: int


@dataclass(frozen=True)
class Int8Origin:
    """Where an int8 version came from: the method, and the fp32 model and version."""

    quantization: str
    fp32_model_sha256: str
    fp32_test_accuracy: float
    fp32_version: str | None = None  # None: not known when the int8 model was made


@dataclass(frozen=True)
class PromotionRecord:
    """Why the champion rule promoted a version or not (the ``promotion.*`` tags)."""

    rule: str
    reason: str
    promoted: bool
    decided_by: str
    candidate_accuracy: float | None
    champion_version: str | None  # None: there was no champion
    champion_accuracy: float | None
    # with a drawn test set only
    sets: str | None = None
    tolerance: float | None = None
    drawn_digest: str | None = None
    candidate_drawn_accuracy: float | None = None
    champion_drawn_accuracy: float | None = None

    def to_tags(self) -> dict[str, str]:
        """The record's tags; the decision last, so a version carrying it carries them all
        (tags are set one at a time)."""
        no_champion = self.champion_version is None
        tags = {
            "promotion.rule": self.rule,
            "promotion.reason": self.reason,
            "promotion.candidate_accuracy": repr(self.candidate_accuracy),
            "promotion.champion_version": NO_CHAMPION if no_champion else self.champion_version,
            "promotion.champion_accuracy": (
                NO_CHAMPION if no_champion else repr(self.champion_accuracy)
            ),
        }
        if self.drawn_digest is not None:
            champion_drawn = self.champion_drawn_accuracy
            tags |= {
                "promotion.sets": self.sets,
                "promotion.tolerance": repr(self.tolerance),
                "promotion.drawn_digest": self.drawn_digest,
                "promotion.candidate_drawn_accuracy": repr(self.candidate_drawn_accuracy),
                "promotion.champion_drawn_accuracy": (
                    NO_CHAMPION if champion_drawn is None else repr(champion_drawn)
                ),
            }
        tags[DECIDED_BY] = self.decided_by
        if self.promoted:
            tags[PROMOTED_BY] = self.decided_by
        tags["promotion.decision"] = self.decision
        return tags

    @property
    def decision(self) -> str:
        return "promoted" if self.promoted else "not promoted"

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> PromotionRecord | None:
        """The record in ``tags``; None when no decision was recorded."""
        decision = tags.get("promotion.decision")
        if decision is None:
            return None
        if decision not in ("promoted", "not promoted"):
            raise ValueError(
                f"version tag promotion.decision={decision!r}: expected 'promoted' or "
                "'not promoted'"
            )
        champion = tags.get("promotion.champion_version", NO_CHAMPION)
        return cls(
            rule=tags.get("promotion.rule", ""),
            reason=tags.get("promotion.reason", ""),
            promoted=decision == "promoted",
            decided_by=tags.get(DECIDED_BY, ""),
            candidate_accuracy=_float(tags, "promotion.candidate_accuracy"),
            champion_version=None if champion == NO_CHAMPION else champion,
            champion_accuracy=_float(tags, "promotion.champion_accuracy"),
            sets=tags.get("promotion.sets"),
            tolerance=_float(tags, "promotion.tolerance"),
            drawn_digest=tags.get("promotion.drawn_digest"),
            candidate_drawn_accuracy=_float(tags, "promotion.candidate_drawn_accuracy"),
            champion_drawn_accuracy=_float(tags, "promotion.champion_drawn_accuracy"),
        )


@dataclass(frozen=True)
class VersionTags:
    """A registered version's tags. ``to_tags`` writes what it is registered with;
    ``from_tags`` reads back everything, the tags written at later steps included."""

    precision: str = FP32
    test_accuracy: float | None = None  # None: registered before the rule recorded it
    test_data_digest: str | None = None
    drawn: DrawnFigure | None = None  # the accuracy on the drawn set it was exported with
    int8: Int8Origin | None = None
    registered_by: str | None = None
    # the sha256 of the registered ONNX bytes: one version per model (None: registered before)
    onnx_sha256: str | None = None
    handed_off: bool = False
    # accuracies measured after registration, by drawn set digest
    measured_on_drawn: Mapping[str, float] = field(default_factory=dict)
    promotion: PromotionRecord | None = None

    def to_tags(self) -> dict[str, str]:
        """The tags a version is registered with (with ``registered_by`` when set)."""
        tags = {"precision": self.precision}
        if self.int8 is not None:
            tags["quantization"] = self.int8.quantization
            if self.int8.fp32_version is not None:
                tags["fp32_version"] = self.int8.fp32_version
            tags["fp32_model_sha256"] = self.int8.fp32_model_sha256
            tags["fp32_test_accuracy"] = repr(self.int8.fp32_test_accuracy)
        if self.test_accuracy is not None:
            tags["test_accuracy"] = repr(self.test_accuracy)
        if self.test_data_digest is not None:
            tags["test_data_digest"] = self.test_data_digest
        if self.drawn is not None:
            tags |= {
                "drawn_accuracy": repr(self.drawn.accuracy),
                "drawn_digest": self.drawn.digest,
                "drawn_images": str(self.drawn.images),
            }
        if self.onnx_sha256 is not None:
            tags["onnx_sha256"] = self.onnx_sha256
        if self.registered_by is not None:
            tags[REGISTERED_BY] = self.registered_by
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> VersionTags:
        """The record in a version's tags; a figure that is not a number raises ValueError.
        A version without a ``precision`` tag is an fp32 one (registered before the tag)."""
        drawn_accuracy = _float(tags, "drawn_accuracy")
        drawn = None
        if drawn_accuracy is not None:
            drawn = DrawnFigure(
                drawn_accuracy,
                _required(tags, "drawn_digest"),
                int(tags.get("drawn_images", "0")),
            )
        int8 = None
        if "quantization" in tags:
            int8 = Int8Origin(
                quantization=tags["quantization"],
                fp32_model_sha256=_required(tags, "fp32_model_sha256"),
                fp32_test_accuracy=_float(tags, "fp32_test_accuracy"),
                fp32_version=tags.get("fp32_version"),
            )
        measured = {
            key.removeprefix(MEASURED_ON_DRAWN): _float(tags, key)
            for key in tags
            if key.startswith(MEASURED_ON_DRAWN)
        }
        return cls(
            precision=tags.get("precision", FP32),
            test_accuracy=_float(tags, "test_accuracy"),
            test_data_digest=tags.get("test_data_digest"),
            drawn=drawn,
            int8=int8,
            registered_by=tags.get(REGISTERED_BY),
            onnx_sha256=tags.get("onnx_sha256"),
            handed_off=tags.get(HANDED_OFF) == "true",
            measured_on_drawn=measured,
            promotion=PromotionRecord.from_tags(tags),
        )

    def accuracy_on_drawn(self, digest: str) -> float | None:
        """The accuracy on the drawn set ``digest``: measured after registration, else the
        one it was exported with if that was on the same set; None when it has neither."""
        if digest in self.measured_on_drawn:
            return self.measured_on_drawn[digest]
        if self.drawn is not None and self.drawn.digest == digest:
            return self.drawn.accuracy
        return None

    def int8_metadata(self) -> dict[str, str]:
        """The tags an int8 model's ONNX metadata repeats, in the metadata's order."""
        tags = self.to_tags()
        return {key: tags[key] for key in INT8_METADATA_KEYS}


def handed_off_tags() -> dict[str, str]:
    """The tag that marks a version whose files are in place."""
    return {HANDED_OFF: "true"}


def measured_on_drawn_tags(digest: str, accuracy: float) -> dict[str, str]:
    """The tag of an accuracy on the drawn set ``digest`` measured after registration."""
    return {MEASURED_ON_DRAWN + digest: repr(accuracy)}
