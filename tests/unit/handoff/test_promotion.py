"""The @champion rule: a better candidate on the same test data moves it; nothing else does."""

from __future__ import annotations

import pytest

from stages.handoff.promotion import Standing, decide

DIGEST = "a" * 64
CHAMPION = Standing(version="3", test_accuracy=0.9830, data_digest=DIGEST)

# (id, candidate, champion, promote?, words the reason must hold)
CASES = [
    ("first-model", Standing("1", 0.90, DIGEST), None, True, ["no champion yet"]),
    ("better", Standing("4", 0.9841, DIGEST), CHAMPION, True, ["98.4100%", "beats", "v3"]),
    (
        "worse",
        Standing("4", 0.9724, DIGEST),
        CHAMPION,
        False,
        ["97.2400%", "is below", "v3's 98.3000%"],
    ),
    ("tie", Standing("4", 0.9830, DIGEST), CHAMPION, False, ["ties", "v3's"]),
    ("other-test-data", Standing("4", 0.99, "b" * 64), CHAMPION, False, ["other test data"]),
    ("same-version", Standing("3", 0.9830, DIGEST), CHAMPION, False, ["champion already"]),
    (
        "champion-without-figures",
        Standing("4", 0.95, DIGEST),
        Standing("2", None, ""),
        True,
        ["carries no test accuracy"],
    ),
]


@pytest.mark.parametrize(
    ("candidate", "champion", "promote", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_rule(
    candidate: Standing, champion: Standing | None, promote: bool, words: list[str]
) -> None:
    decision = decide(candidate, champion)
    assert decision.promote is promote
    for word in words:
        assert word in decision.reason
    assert "\n" not in decision.reason


# --- settling the alias after exports on several machines ---------------------------------------


def test_settle_moves_the_champion_to_the_best_version_on_its_test_data():
    from stages.handoff.promotion import settle

    standings = [
        CHAMPION,
        Standing("4", 0.9850, DIGEST),
        Standing("5", 0.9870, DIGEST),
        Standing("6", 0.9990, "b" * 64),  # other test data: not comparable
        Standing("7", None, DIGEST),  # not measured yet
    ]
    assert settle(CHAMPION, standings) == Standing("5", 0.9870, DIGEST)


def test_settle_leaves_a_champion_no_version_beats():
    from stages.handoff.promotion import settle

    assert settle(CHAMPION, [CHAMPION, Standing("4", 0.9830, DIGEST)]) is None
    assert settle(CHAMPION, [CHAMPION, Standing("4", 0.97, DIGEST)]) is None
    assert settle(None, [CHAMPION]) is None
    assert settle(Standing("2", None, ""), [CHAMPION]) is None


def test_settle_picks_the_same_version_among_equals_for_every_exporter():
    from stages.handoff.promotion import settle

    tied = [Standing("9", 0.99, DIGEST), Standing("4", 0.99, DIGEST), CHAMPION]
    assert settle(CHAMPION, tied).version == "4"
    assert settle(CHAMPION, list(reversed(tied))).version == "4"
