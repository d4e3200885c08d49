"""Which exported model deployment should use: the rule that moves the ``@champion`` alias.

``@candidate`` is always the newest model that passed the parity gate; ``@champion`` moves
to it only when it beats the current champion under ``RULE``. Pure: the registry reads
and writes are the caller's.

Two machines exporting at once may both read the same champion and move the alias one
after the other, the worse model last. So after every decision the exporter settles the
alias (``settle``): it re-reads every version measured on the champion's test data and
moves ``@champion`` to the best of them if it is not there, until a read confirms it.
Every exporter settles after its own version is registered, and the best version wins
every settle, so the last one leaves ``@champion`` on the best version, whoever ran it.
"""

from __future__ import annotations

from dataclasses import dataclass

RULE = (
    "a candidate becomes champion when its test accuracy is higher than the champion's on "
    "the same test data (same data digest); a tie keeps the champion"
)


@dataclass(frozen=True)
class Standing:
    """A registered version, its test accuracy and the digest of the data it was measured on."""

    version: str
    test_accuracy: float | None  # None: a version registered before the rule recorded it
    data_digest: str


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    candidate: Standing
    champion: Standing | None  # as it stood when the rule was applied


def decide(candidate: Standing, champion: Standing | None) -> Decision:
    """Apply ``RULE``: promote the candidate, or keep the champion, and say why in one line."""
    promote, reason = _verdict(candidate, champion)
    return Decision(promote, reason, candidate, champion)


def _verdict(candidate: Standing, champion: Standing | None) -> tuple[bool, str]:
    if champion is None:
        return True, "there is no champion yet"
    if champion.version == candidate.version:
        return False, f"v{candidate.version} is the champion already"
    if champion.test_accuracy is None:
        return (True, f"champion v{champion.version} carries no test accuracy to compare with")
    if champion.data_digest != candidate.data_digest:
        return (
            False,
            f"champion v{champion.version} was measured on other test data "
            f"({champion.data_digest[:12]}…, candidate {candidate.data_digest[:12]}…): "
            "not comparable",
        )
    if candidate.test_accuracy > champion.test_accuracy:
        return (
            True,
            f"test accuracy {candidate.test_accuracy:.4%} beats champion "
            f"v{champion.version}'s {champion.test_accuracy:.4%}",
        )
    verb = "ties" if candidate.test_accuracy == champion.test_accuracy else "is below"
    return (
        False,
        f"test accuracy {candidate.test_accuracy:.4%} {verb} champion v{champion.version}'s "
        f"{champion.test_accuracy:.4%}",
    )


def settle(champion: Standing | None, standings: list[Standing]) -> Standing | None:
    """The version ``@champion`` must move to so that no version measured on its test data is
    better; None when it is where it belongs (or there is no champion to compare with).

    Among equally good versions the current champion stays (a tie keeps the champion), else
    the oldest, so that every exporter settling at once picks the same one.
    """
    if champion is None or champion.test_accuracy is None:
        return None
    rivals = [
        s
        for s in standings
        if s.data_digest == champion.data_digest and s.test_accuracy is not None
    ]
    if not rivals:
        return None
    best = max(s.test_accuracy for s in rivals)
    if champion.test_accuracy >= best:
        return None
    return min((s for s in rivals if s.test_accuracy == best), key=lambda s: int(s.version))
