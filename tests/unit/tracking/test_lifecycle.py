"""A person's moves of @champion (promote, rollback, unpin), the pin the rule respects, @int8
following @champion, and the history kept on the registered model (an in-memory registry)."""

from __future__ import annotations

import pytest

from factories.fake_registry import FakeRegistry
from kernel.cli import CommandError
from stages.export import decision_line
from tracking import champion, lifecycle
from tracking.champion import Standing
from tracking.champion_history import history, pin_of
from tracking.lifecycle import Aliases
from tracking.version_tags import INT8, Int8Origin, VersionTags

DIGEST = "a" * 64
ALIASES = Aliases("champion", "int8")
NAME = "mnist-digits"


def _registry(*figures: tuple[str, float], champion_version: str = "1") -> FakeRegistry:
    registry = FakeRegistry()
    for version, accuracy in figures:
        registry.register(
            version, VersionTags(test_accuracy=accuracy, test_data_digest=DIGEST).to_tags()
        )
    registry.aliases["champion"] = champion_version
    return registry


def _add_twin(registry: FakeRegistry, version: str, fp32_version: str) -> None:
    origin = Int8Origin("dynamic", "f" * 64, 0.98, fp32_version=fp32_version)
    tags = VersionTags(precision=INT8, test_accuracy=0.979, test_data_digest=DIGEST, int8=origin)
    registry.register(version, tags.to_tags())


def _writes(registry: FakeRegistry) -> list[tuple[str, tuple]]:
    reads = ("alias_target", "version_tags", "all_version_tags", "model_tags")
    return [call for call in registry.calls if call[0] not in reads]


def _export(registry: FakeRegistry, version: str, accuracy: float):
    """What an export does after its hand-off: the rule, then @int8 follows."""
    registry.register(
        version, VersionTags(test_accuracy=accuracy, test_data_digest=DIGEST).to_tags()
    )
    decision = champion.promote(
        registry, Standing(version, accuracy, DIGEST), "champion", program="export", by="bob"
    )
    lifecycle.follow_champion(registry, ALIASES, program="export")
    return decision


def test_a_promotion_moves_pins_records_and_takes_int8_along() -> None:
    registry = _registry(("1", 0.98), ("3", 0.97))
    _add_twin(registry, "2", "1")
    _add_twin(registry, "4", "3")
    registry.aliases["int8"] = "2"
    lines = lifecycle.move_champion(registry, NAME, ALIASES, "3", "v1 misreads sevens", by="ann")
    assert registry.aliases == {"champion": "3", "int8": "4"}
    assert lines[0].startswith("tracking: @champion v1 -> v3 (promote by ann: v1 misreads sevens)")
    assert lines[1] == "tracking: @int8 is v4, the int8 twin of @champion v3"
    (move,) = history(registry.model_tags(), "champion")
    assert (move.source, move.to, move.by, move.how, move.reason) == (
        "1",
        "3",
        "ann",
        "promote",
        "v1 misreads sevens",
    )
    assert pin_of(registry.model_tags(), "champion").version == "3"


def test_a_pinned_champion_survives_a_better_export_and_the_line_says_so() -> None:
    registry = _registry(("1", 0.98), ("2", 0.97))
    lifecycle.move_champion(registry, NAME, ALIASES, "2", "keep the old one", by="ann")
    decision = _export(registry, "3", 0.99)
    assert registry.aliases["champion"] == "2"
    assert decision.promote and not decision.moved
    assert decision_line("champion", "3", decision).startswith(
        "export: @champion stays, pinned to v2 by ann (keep the old one); the rule would move "
        "it to v3: test accuracy"
    )
    record = champion.promotion_record(decision, "bob")
    assert not record.promoted and "pinned to v2 by ann" in record.reason
    champion.settle_champion(registry, "champion", program="export", by="bob")
    assert registry.aliases["champion"] == "2", "the settle leaves a pin alone too"
    lifecycle.unpin(registry, ALIASES, "the rule again", by="ann")
    _export(registry, "4", 0.995)
    assert registry.aliases["champion"] == "4"
    assert [m.how for m in history(registry.model_tags(), "champion")] == [
        "promote", "unpin", "rule"
    ]  # fmt: skip


def test_int8_follows_the_champion_through_a_worse_export_a_promotion_and_a_rollback() -> None:
    registry = _registry(("1", 0.98))
    _add_twin(registry, "2", "1")
    lifecycle.follow_champion(registry, ALIASES, program="quantize")
    assert registry.aliases["int8"] == "2"
    # a worse experiment and its twin: neither alias moves
    _export(registry, "3", 0.97)
    _add_twin(registry, "4", "3")
    lifecycle.follow_champion(registry, ALIASES, program="quantize")
    assert registry.aliases == {"champion": "1", "int8": "2"}
    # a better one: @int8 is removed until its twin exists, then names it
    _export(registry, "5", 0.99)
    assert registry.aliases == {"champion": "5"}
    _add_twin(registry, "6", "5")
    assert lifecycle.follow_champion(registry, ALIASES, program="quantize") == (
        "quantize: @int8 is v6, the int8 twin of @champion v5"
    )
    lifecycle.move_champion(registry, NAME, ALIASES, "3", "drawn digits", by="ann")
    assert registry.aliases == {"champion": "3", "int8": "4"}
    lifecycle.rollback(registry, NAME, ALIASES, "back", by="ann")
    assert registry.aliases == {"champion": "5", "int8": "6"}


def test_int8_is_removed_with_a_reason_when_the_champion_has_no_twin() -> None:
    registry = _registry(("1", 0.98), ("3", 0.97))
    _add_twin(registry, "2", "1")
    registry.aliases["int8"] = "2"
    lines = lifecycle.move_champion(registry, NAME, ALIASES, "3", "why not", by="ann")
    assert "int8" not in registry.aliases
    assert lines[1] == (
        "tracking: @int8 removed: @champion v3 has no int8 twin that passed its gate (yet: "
        "quantize makes it after an export)"
    )


def test_a_rollback_goes_back_one_move_each_time_it_is_asked() -> None:
    registry = _registry(("1", 0.98), ("2", 0.97), ("3", 0.96))
    lifecycle.move_champion(registry, NAME, ALIASES, "2", "a", by="ann")
    lifecycle.move_champion(registry, NAME, ALIASES, "3", "b", by="ann")
    lifecycle.rollback(registry, NAME, ALIASES, "c", by="bob")
    assert registry.aliases["champion"] == "2"
    moves = history(registry.model_tags(), "champion")
    assert [(m.source, m.to, m.how, m.by) for m in moves] == [
        ("1", "2", "promote", "ann"),
        ("2", "3", "promote", "ann"),
        ("3", "2", "rollback", "bob"),
    ]
    lines = lifecycle.history_lines(registry, ALIASES)
    assert lines[-1] == "@champion is v2, pinned to v2 by bob (c)"
    assert " rollback      v3 -> v2        by bob: c" in lines[2]


BAD = [
    ("unknown-version", "9", "why", "mnist-digits has no version '9' (its versions: 1, 2, 3, 4)"),
    ("an-int8-version", "4", "why", "mnist-digits v4 is an int8 model (of fp32 v2)"),
    ("hand-off-not-finished", "3", "why", "mnist-digits v3's hand-off did not finish"),
    ("the-champion-itself", "1", "why", "v1 is @champion already: nothing to move"),
    ("empty-reason", "2", "  ", 'a reason is required: --reason "why this version"'),
]


@pytest.mark.parametrize(
    ("version", "reason", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_a_bad_promotion_is_one_error_and_moves_nothing(
    version: str, reason: str, message: str
) -> None:
    registry = _registry(("1", 0.98), ("2", 0.97), ("3", 0.99))
    registry.versions["3"]["handed_off"] = "false"
    _add_twin(registry, "4", "2")
    registry.calls.clear()
    with pytest.raises(CommandError) as raised:
        lifecycle.move_champion(registry, NAME, ALIASES, version, reason, by="ann")
    assert str(raised.value).startswith(message)
    assert _writes(registry) == []
    assert registry.aliases == {"champion": "1"} and registry.model_tag_values == {}


def test_a_rollback_with_no_previous_champion_and_an_unpin_without_pin_move_nothing() -> None:
    registry = _registry(("1", 0.98))
    registry.calls.clear()
    with pytest.raises(CommandError, match="no previous champion in its history"):
        lifecycle.rollback(registry, NAME, ALIASES, "why", by="ann")
    with pytest.raises(CommandError, match="is not pinned"):
        lifecycle.unpin(registry, ALIASES, "why", by="ann")
    assert _writes(registry) == []


def test_a_move_record_that_is_no_record_is_named() -> None:
    registry = _registry(("1", 0.98))
    registry.model_tag_values["champion.move.x"] = "{not json"
    with pytest.raises(ValueError, match="not a move record"):
        lifecycle.history_lines(registry, ALIASES)
