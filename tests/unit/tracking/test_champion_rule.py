"""The @champion rule itself (pure): a better candidate on the same test data moves it; nothing
else does. A version's standing as the rule reads it from its tags."""

from __future__ import annotations

import pytest

from tracking.champion import Standing, decide

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
    from tracking.champion import settle

    standings = [
        CHAMPION,
        Standing("4", 0.9850, DIGEST),
        Standing("5", 0.9870, DIGEST),
        Standing("6", 0.9990, "b" * 64),  # other test data: not comparable
        Standing("7", None, DIGEST),  # not measured yet
    ]
    assert settle(CHAMPION, standings) == Standing("5", 0.9870, DIGEST)


def test_settle_leaves_a_champion_no_version_beats():
    from tracking.champion import settle

    assert settle(CHAMPION, [CHAMPION, Standing("4", 0.9830, DIGEST)]) is None
    assert settle(CHAMPION, [CHAMPION, Standing("4", 0.97, DIGEST)]) is None
    assert settle(None, [CHAMPION]) is None
    assert settle(Standing("2", None, ""), [CHAMPION]) is None


def test_settle_picks_the_same_version_among_equals_for_every_exporter():
    from tracking.champion import settle

    tied = [Standing("9", 0.99, DIGEST), Standing("4", 0.99, DIGEST), CHAMPION]
    assert settle(CHAMPION, tied).version == "4"
    assert settle(CHAMPION, list(reversed(tied))).version == "4"


# --- with a drawn test set: both sets weighed, within export.promotion_tolerance ----------------

DRAWN = "c" * 64
TOLERANCE = 0.002
# champion v3: 98.30% on MNIST's test set, 90.00% on the drawn one
DRAWN_CHAMPION = Standing("3", 0.9830, DIGEST, 0.9000, DRAWN)


def _drawn(version: str, test: float, drawn: float, drawn_digest: str = DRAWN) -> Standing:
    return Standing(version, test, DIGEST, drawn, drawn_digest)


# (id, candidate, champion, promote?, both sets weighed?, words the reason must hold)
DRAWN_CASES = [
    (
        "better-on-both",
        _drawn("4", 0.9841, 0.9100),
        DRAWN_CHAMPION,
        True,
        True,
        [
            "beats champion v3 on both sets",
            "MNIST test accuracy 98.4100% vs 98.3000%",
            "drawn accuracy 91.0000% vs 90.0000%",
        ],
    ),
    (
        "better-on-drawn-within-tolerance-on-mnist",
        _drawn("4", 0.9815, 0.9200),
        DRAWN_CHAMPION,
        True,
        True,
        [
            "beats champion v3 on the drawn set",
            "lower by at most the tolerance of 0.2000 points on the MNIST test set",
            "(-0.1500 points)",
            "(+2.0000 points)",
        ],
    ),
    (
        "better-on-mnist-a-loss-of-exactly-the-tolerance-on-drawn",
        _drawn("4", 0.9840, 0.8980),
        DRAWN_CHAMPION,
        True,
        True,
        ["beats champion v3 on the MNIST test set", "on the drawn set"],
    ),
    (
        "better-on-mnist-tie-on-drawn",
        _drawn("4", 0.9840, 0.9000),
        DRAWN_CHAMPION,
        True,
        True,
        ["beats champion v3 on the MNIST test set and ties on the drawn set"],
    ),
    (
        "better-on-drawn-beyond-tolerance-on-mnist",
        _drawn("4", 0.9800, 0.9500),
        DRAWN_CHAMPION,
        False,
        True,
        [
            "better than champion v3 on the drawn set but lower on the MNIST test set by more "
            "than the tolerance of 0.2000 points",
            "(-0.3000 points)",
        ],
    ),
    (
        "better-on-mnist-beyond-tolerance-on-drawn",
        _drawn("4", 0.9900, 0.8900),
        DRAWN_CHAMPION,
        False,
        True,
        ["on the MNIST test set but lower on the drawn set by more than the tolerance"],
    ),
    (
        "tie-on-both",
        _drawn("4", 0.9830, 0.9000),
        DRAWN_CHAMPION,
        False,
        True,
        ["ties champion v3 on both sets", "(+0.0000 points)"],
    ),
    (
        "worse-within-tolerance-on-both",
        _drawn("4", 0.9829, 0.8999),
        DRAWN_CHAMPION,
        False,
        True,
        ["is better than champion v3 on neither set"],
    ),
    (
        "other-mnist-test-data",
        Standing("4", 0.99, "b" * 64, 0.99, DRAWN),
        DRAWN_CHAMPION,
        False,
        False,
        ["other test data", "not comparable"],
    ),
    (
        "champion-on-another-drawn-set-mnist-decides",
        _drawn("4", 0.9841, 0.50),
        _drawn("3", 0.9830, 0.90, "e" * 64),
        True,
        False,
        [
            "champion v3 was measured on another drawn test set (eeeeeeeeeeee…, candidate "
            "cccccccccccc…)",
            "so the MNIST test set alone decides: test accuracy 98.4100% beats",
        ],
    ),
    (
        "champion-without-drawn-accuracy-mnist-decides",
        _drawn("4", 0.9820, 0.99),
        CHAMPION,
        False,
        False,
        [
            "champion v3 has no accuracy on the drawn test set (cccccccccccc…)",
            "so the MNIST test set alone decides: test accuracy 98.2000% is below",
        ],
    ),
    (
        "no-drawn-set-today's-rule-even-if-the-champion-has-one",
        Standing("4", 0.9831, DIGEST),
        DRAWN_CHAMPION,
        True,
        False,
        ["test accuracy 98.3100% beats champion v3's 98.3000%"],
    ),
    ("first-model-with-a-drawn-set", _drawn("1", 0.5, 0.5), None, True, False, ["no champion"]),
    (
        "champion-without-figures",
        _drawn("4", 0.5, 0.5),
        Standing("2", None, ""),
        True,
        False,
        ["carries no test accuracy"],
    ),
]


@pytest.mark.parametrize(
    ("candidate", "champion", "promote", "both_sets", "words"),
    [case[1:] for case in DRAWN_CASES],
    ids=[case[0] for case in DRAWN_CASES],
)
def test_the_rule_with_a_drawn_set(
    candidate: Standing,
    champion: Standing | None,
    promote: bool,
    both_sets: bool,
    words: list[str],
) -> None:
    decision = decide(candidate, champion, TOLERANCE)
    assert (decision.promote, decision.both_sets) == (promote, both_sets), decision.reason
    assert decision.tolerance == TOLERANCE
    for word in words:
        assert word in decision.reason
    assert "\n" not in decision.reason
    if both_sets:  # the reason names both sets and both figures of each
        assert "MNIST test accuracy" in decision.reason and "drawn accuracy" in decision.reason


def test_without_a_tolerance_a_loss_on_either_set_keeps_the_champion() -> None:
    assert not decide(_drawn("4", 0.9900, 0.8999), DRAWN_CHAMPION).promote
    assert decide(_drawn("4", 0.9900, 0.9000), DRAWN_CHAMPION).promote


def test_the_rule_text_states_both_cases() -> None:
    from tracking.champion import RULE

    assert "higher than the champion's on the same test data (same data digest)" in RULE
    assert "same digests of both" in RULE and "export.promotion_tolerance" in RULE
    assert "a tie keeps the champion" in RULE


def test_settle_with_a_drawn_set_moves_only_to_a_version_better_on_one_and_no_worse():
    from tracking.champion import settle

    standings = [
        DRAWN_CHAMPION,
        _drawn("4", 0.9900, 0.8990),  # beats it under the rule (within tolerance): not a repair
        _drawn("5", 0.9840, 0.9000),  # dominates it: sum 1.8840
        _drawn("6", 0.9835, 0.9100),  # dominates it: sum 1.8935, the highest
        _drawn("7", 0.9999, 0.9999, "e" * 64),  # another drawn set: not comparable
        Standing("8", 0.9999, DIGEST),  # no drawn accuracy: not comparable
        Standing("9", 0.9999, "b" * 64, 0.9999, DRAWN),  # other MNIST test data
    ]
    assert settle(DRAWN_CHAMPION, standings).version == "6"
    assert settle(_drawn("6", 0.9835, 0.9100), standings) is None, "a second settle stays"


def test_settle_with_a_drawn_set_converges_where_the_rule_goes_round():
    """Each of two versions beats the other under the rule (better on one set, within the
    tolerance on the other); settling must not move the alias from one to the other."""
    from tracking.champion import settle

    a, b = _drawn("4", 0.9800, 0.9010), _drawn("5", 0.9810, 0.9000)
    assert decide(a, b, TOLERANCE).promote and decide(b, a, TOLERANCE).promote
    assert settle(a, [a, b]) is None
    assert settle(b, [a, b]) is None


def test_settle_with_a_drawn_set_picks_the_same_version_among_equals_for_every_exporter():
    from tracking.champion import settle

    tied = [_drawn("9", 0.9850, 0.9100), _drawn("5", 0.9860, 0.9090), DRAWN_CHAMPION]
    assert settle(DRAWN_CHAMPION, tied).version == "5"
    assert settle(DRAWN_CHAMPION, list(reversed(tied))).version == "5"


def test_settle_of_a_champion_without_drawn_accuracy_weighs_the_mnist_test_set_alone():
    from tracking.champion import settle

    standings = [CHAMPION, _drawn("4", 0.9850, 0.10), Standing("5", 0.9840, DIGEST)]
    assert settle(CHAMPION, standings).version == "4"


# --- a version's standing as the rule reads it from its registry tags --------------------------

OWN = {"test_accuracy": "0.983", "test_data_digest": DIGEST}


@pytest.mark.parametrize(
    ("tags", "drawn_digest", "expected"),
    [
        (OWN, None, Standing("3", 0.983, DIGEST)),
        (
            {**OWN, "drawn_accuracy": "0.9", "drawn_digest": DRAWN},
            None,
            Standing("3", 0.983, DIGEST),
        ),
        (
            {**OWN, "drawn_accuracy": "0.9", "drawn_digest": DRAWN},
            DRAWN,
            Standing("3", 0.983, DIGEST, 0.9, DRAWN),
        ),
        # measured on this drawn set after it was registered on another one
        (
            {
                **OWN,
                "drawn_accuracy": "0.9",
                "drawn_digest": "e" * 64,
                f"drawn_accuracy.{DRAWN}": "0.8",
            },
            DRAWN,
            Standing("3", 0.983, DIGEST, 0.8, DRAWN),
        ),
        # registered before any drawn set, measured on this one
        (
            {**OWN, f"drawn_accuracy.{DRAWN}": "0.8"},
            DRAWN,
            Standing("3", 0.983, DIGEST, 0.8, DRAWN),
        ),
        # no figure on this drawn set: the rule falls back to the MNIST test set
        (
            {**OWN, "drawn_accuracy": "0.9", "drawn_digest": "e" * 64},
            DRAWN,
            Standing("3", 0.983, DIGEST, None, "e" * 64),
        ),
        (OWN, DRAWN, Standing("3", 0.983, DIGEST)),
    ],
    ids=[
        "no-drawn-set",
        "no-drawn-set-asked",
        "own-drawn-set",
        "measured-later-beside-another",
        "measured-later",
        "other-drawn-set",
        "none",
    ],
)
def test_a_standing_from_version_tags(
    tags: dict[str, str], drawn_digest: str | None, expected: Standing
) -> None:
    from tracking.champion import standing_from_tags

    assert standing_from_tags("3", tags, drawn_digest) == expected
