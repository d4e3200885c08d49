"""A registered version's tags as one record: written and read back the same, and the keys
existing stores and the team server rely on."""

from __future__ import annotations

import pytest

from tracking.version_tags import (
    DrawnFigure,
    Int8Origin,
    PromotionRecord,
    VersionTags,
    handed_off_tags,
    measured_on_drawn_tags,
)

DIGEST, DRAWN = "a" * 64, "c" * 64
FP32_WITH_DRAWN = VersionTags(
    test_accuracy=0.9831,
    test_data_digest=DIGEST,
    drawn=DrawnFigure(0.1 + 0.2, DRAWN, 40),  # a float whose repr has every digit
    registered_by="ann",
)
INT8 = VersionTags(
    precision="int8",
    test_accuracy=0.9832,
    test_data_digest=DIGEST,
    int8=Int8Origin("onnxruntime dynamic quantization", "f" * 64, 0.9831, fp32_version="3"),
    registered_by="bob",
)
RECORD = PromotionRecord(
    rule="the rule",
    reason="beats",
    promoted=True,
    decided_by="ann",
    candidate_accuracy=0.99,
    champion_version="1",
    champion_accuracy=None,  # a champion registered before the rule recorded it
    sets="MNIST test and drawn",
    tolerance=0.002,
    drawn_digest=DRAWN,
    candidate_drawn_accuracy=0.95,
    champion_drawn_accuracy=None,
)


@pytest.mark.parametrize(
    "tags", [FP32_WITH_DRAWN, INT8, VersionTags()], ids=["fp32", "int8", "bare"]
)
def test_written_tags_read_back_the_same_record(tags: VersionTags) -> None:
    assert VersionTags.from_tags(tags.to_tags()) == tags


def test_the_tags_written_keep_their_keys_and_values() -> None:
    assert FP32_WITH_DRAWN.to_tags() == {
        "precision": "fp32",
        "test_accuracy": "0.9831",
        "test_data_digest": DIGEST,
        "drawn_accuracy": "0.30000000000000004",
        "drawn_digest": DRAWN,
        "drawn_images": "40",
        "registered_by": "ann",
    }
    assert INT8.to_tags() == {
        "precision": "int8",
        "quantization": "onnxruntime dynamic quantization",
        "fp32_version": "3",
        "fp32_model_sha256": "f" * 64,
        "fp32_test_accuracy": "0.9831",
        "test_accuracy": "0.9832",
        "test_data_digest": DIGEST,
        "registered_by": "bob",
    }
    assert list(INT8.int8_metadata()) == [
        "test_accuracy",
        "precision",
        "quantization",
        "fp32_model_sha256",
        "fp32_test_accuracy",
    ]


def test_a_promotion_record_reads_back_and_its_decision_comes_last() -> None:
    tags = RECORD.to_tags()
    assert list(tags)[-3:] == ["promotion.decided_by", "promoted_by", "promotion.decision"]
    assert tags["promotion.champion_accuracy"] == "None"
    assert tags["promotion.champion_drawn_accuracy"] == "none"
    assert PromotionRecord.from_tags(tags) == RECORD
    assert PromotionRecord.from_tags({}) is None


def test_the_tags_written_at_later_steps_are_read_too() -> None:
    tags = {
        **FP32_WITH_DRAWN.to_tags(),
        **handed_off_tags(),
        **measured_on_drawn_tags("e" * 64, 0.8),
        **RECORD.to_tags(),
    }
    record = VersionTags.from_tags(tags)
    assert record.handed_off and record.promotion == RECORD
    assert record.accuracy_on_drawn("e" * 64) == 0.8
    assert record.accuracy_on_drawn(DRAWN) == FP32_WITH_DRAWN.drawn.accuracy
    assert record.accuracy_on_drawn("f" * 64) is None


def test_a_version_registered_before_the_tags_is_an_fp32_one_without_figures() -> None:
    record = VersionTags.from_tags({"mlflow.user": "ann"})
    assert record == VersionTags()
    assert record.precision == "fp32" and record.test_accuracy is None


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"test_accuracy": "high"}, "test_accuracy='high': expected a number"),
        ({"drawn_accuracy": "0.9"}, "no drawn_digest"),
        ({"promotion.decision": "maybe"}, "promotion.decision='maybe'"),
    ],
    ids=["not-a-number", "half-a-figure", "unknown-decision"],
)
def test_malformed_tags_are_refused_with_the_key(tags: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VersionTags.from_tags(tags)
