"""The champion rule applied to a registry (an in-memory one): promote or keep, settle, the
champion measured on the drawn test set, and the decision recorded on the version."""

from __future__ import annotations

import pytest

from factories.fake_registry import FakeDrawnSet, FakeRegistry
from kernel.cli import CommandError
from tracking import champion
from tracking.champion import RULE, Standing
from tracking.version_tags import DrawnFigure, VersionTags

DIGEST = "a" * 64
DRAWN = "c" * 64
ALIAS = "champion"


def _registry(*figures: tuple[str, float], champion_version: str | None = "1") -> FakeRegistry:
    """Handed-off fp32 versions with these test accuracies on DIGEST; ``@champion`` on one."""
    registry = FakeRegistry()
    for version, accuracy in figures:
        tags = VersionTags(test_accuracy=accuracy, test_data_digest=DIGEST, registered_by="ann")
        registry.register(version, tags.to_tags())
    if champion_version is not None:
        registry.aliases[ALIAS] = champion_version
    return registry


def _promote(registry: FakeRegistry, candidate: Standing, **kwargs: object):
    return champion.promote(registry, candidate, ALIAS, program="export", by="alice", **kwargs)


# (id, the champion's test accuracy or None for no champion, the candidate's, its test
#  data's digest, whether @champion moves to it)
CASES = [
    ("better", 0.98, 0.99, DIGEST, True),
    ("worse", 0.98, 0.97, DIGEST, False),
    ("tie", 0.98, 0.98, DIGEST, False),
    ("no-champion-yet", None, 0.50, DIGEST, True),
    ("other-test-data", 0.98, 0.99, "b" * 64, False),
]


@pytest.mark.parametrize(
    ("champion_accuracy", "accuracy", "digest", "moves"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_promote_moves_the_alias_only_to_a_better_candidate(
    champion_accuracy: float | None, accuracy: float, digest: str, moves: bool
) -> None:
    if champion_accuracy is None:
        registry = _registry(champion_version=None)
    else:
        registry = _registry(("1", champion_accuracy))
    registry.register("2", VersionTags(test_accuracy=accuracy, test_data_digest=digest).to_tags())
    decision = _promote(registry, Standing("2", accuracy, digest))
    assert decision.promote is moves
    assert registry.aliases[ALIAS] == ("2" if moves else "1")
    assert decision.champion == (
        None if champion_accuracy is None else Standing("1", champion_accuracy, DIGEST)
    )


def test_settle_moves_the_alias_to_a_better_version_another_export_left_behind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # v2 was promoted on another machine, whose move v1's exporter then overwrote
    registry = _registry(("1", 0.980), ("2", 0.990), ("3", 0.985))
    decision = _promote(registry, Standing("3", 0.985, DIGEST))
    assert decision.promote, "v3 beats v1, the champion it read"
    assert registry.aliases[ALIAS] == "2"
    assert capsys.readouterr().err.splitlines() == [
        "export: @champion settled on v2, better than v3 on the same test data "
        "(another export moved it meanwhile)"
    ]


@pytest.mark.parametrize(
    "left_out",
    [{"handed_off": "false"}, {"precision": "int8"}],
    ids=["not-handed-off-yet", "an-int8-version"],
)
def test_settle_passes_over_versions_that_may_not_be_champion(left_out: dict[str, str]) -> None:
    registry = _registry(("1", 0.98), ("2", 0.99))
    registry.versions["2"] |= left_out
    champion.settle_champion(registry, ALIAS, program="export", by="alice")
    assert registry.aliases[ALIAS] == "1"


def test_settle_stops_after_its_rounds_when_the_alias_never_stays() -> None:
    registry = _registry(("1", 0.98), ("2", 0.99))
    # another machine puts the alias back on v1 after every move
    registry.failures["all_version_tags"] = lambda: registry.aliases.update({ALIAS: "1"})
    champion.settle_champion(registry, ALIAS, program="export", by="alice", rounds=3)
    moves = [args for operation, args in registry.calls if operation == "set_alias"]
    assert moves == [(ALIAS, "2")] * 3


def _decided_tags(registry: FakeRegistry, version: str) -> dict[str, str]:
    return {k: v for k, v in registry.versions[version].items() if "promot" in k}


def test_the_decision_is_recorded_on_the_version_with_the_decision_last() -> None:
    registry = _registry(("1", 0.98), ("2", 0.99))
    decision = _promote(registry, Standing("2", 0.99, DIGEST))
    champion.record_decision(registry, "2", decision, decided_by="bob")
    assert _decided_tags(registry, "2") == {
        "promotion.rule": RULE,
        "promotion.reason": decision.reason,
        "promotion.candidate_accuracy": "0.99",
        "promotion.champion_version": "1",
        "promotion.champion_accuracy": "0.98",
        "promotion.decided_by": "bob",
        "promoted_by": "bob",
        "promotion.decision": "promoted",
    }
    written = [args[1] for operation, args in registry.calls if operation == "tag_version"]
    assert written[-1] == "promotion.decision", "a version carrying it carries the whole record"


@pytest.mark.parametrize(
    ("champion_version", "accuracy", "expected"),
    [
        (None, 0.5, {"promotion.champion_version": "none", "promotion.champion_accuracy": "none"}),
        ("1", 0.97, {"promotion.champion_version": "1", "promotion.decision": "not promoted"}),
    ],
    ids=["no-champion", "not-promoted"],
)
def test_a_record_without_a_champion_or_a_promotion(
    champion_version: str | None, accuracy: float, expected: dict[str, str]
) -> None:
    registry = _registry(("1", 0.98), ("2", accuracy), champion_version=champion_version)
    decision = _promote(registry, Standing("2", accuracy, DIGEST))
    champion.record_decision(registry, "2", decision, decided_by="bob")
    tags = _decided_tags(registry, "2")
    assert expected.items() <= tags.items()
    assert ("promoted_by" in tags) is decision.promote


# --- with a drawn test set: the champion measured on it, once ---------------------------------


def _drawn_registry() -> FakeRegistry:
    """v1 champion, registered before the drawn set; v2 the candidate, measured on it."""
    registry = _registry(("1", 0.98))
    registry.models["1"] = b"champion model"
    drawn = DrawnFigure(0.95, DRAWN, 40)
    registry.register(
        "2", VersionTags(test_accuracy=0.979, test_data_digest=DIGEST, drawn=drawn).to_tags()
    )
    return registry


CANDIDATE = Standing("2", 0.979, DIGEST, 0.95, DRAWN)
DRAWN_SET = FakeDrawnSet(DRAWN, {b"champion model": 0.90})


def test_a_champion_without_a_figure_is_measured_on_the_drawn_set_and_both_sets_decide() -> None:
    registry = _drawn_registry()
    decision = _promote(registry, CANDIDATE, tolerance=0.002, drawn=DRAWN_SET)
    assert registry.versions["1"][f"drawn_accuracy.{DRAWN}"] == "0.9"
    assert decision.both_sets and decision.promote, decision.reason
    assert decision.champion == Standing("1", 0.98, DIGEST, 0.90, DRAWN)
    champion.record_decision(registry, "2", decision, decided_by="bob")
    assert {
        "promotion.sets": "MNIST test and drawn",
        "promotion.tolerance": "0.002",
        "promotion.drawn_digest": DRAWN,
        "promotion.candidate_drawn_accuracy": "0.95",
        "promotion.champion_drawn_accuracy": "0.9",
    }.items() <= registry.versions["2"].items()


def test_a_champion_measured_on_the_drawn_set_is_not_downloaded_again() -> None:
    registry = _drawn_registry()
    registry.versions["1"][f"drawn_accuracy.{DRAWN}"] = "0.9"
    registry.failures["version_onnx_bytes"] = lambda version: AssertionError("in its tags")
    decision = _promote(registry, CANDIDATE, tolerance=0.002, drawn=DRAWN_SET)
    assert decision.both_sets
    assert "version_onnx_bytes" not in [operation for operation, _ in registry.calls]


def test_a_champion_that_cannot_be_measured_leaves_the_mnist_test_set_to_decide(
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = _drawn_registry()
    del registry.models["1"]
    decision = _promote(registry, CANDIDATE, tolerance=0.002, drawn=DRAWN_SET)
    champion.record_decision(registry, "2", decision, decided_by="bob")
    assert not decision.both_sets and not decision.promote
    assert "so the MNIST test set alone decides: test accuracy" in decision.reason
    assert f"drawn_accuracy.{DRAWN}" not in registry.versions["1"]
    tags = registry.versions["2"]
    assert tags["promotion.sets"] == "MNIST test"
    assert tags["promotion.champion_drawn_accuracy"] == "none"
    assert capsys.readouterr().err.splitlines() == [
        "export: warning: champion v1's model could not be measured on the drawn test set, "
        "so the MNIST test set alone decides: models:/fake/1: no such artifact"
    ]


def test_a_registry_failure_reaches_the_caller() -> None:
    registry = _registry(("1", 0.98))
    registry.failures["version_tags"] = lambda version: CommandError("database is locked")
    with pytest.raises(CommandError, match="database is locked"):
        _promote(registry, Standing("2", 0.99, DIGEST))
    assert registry.aliases[ALIAS] == "1"
