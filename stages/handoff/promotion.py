"""Which exported model deployment should use: the rule that moves the ``@champion`` alias.

``@candidate`` is always the newest model that passed the parity gate; ``@champion`` moves
to it only when it beats the current champion under ``RULE``. Pure: the registry reads
and writes are the caller's.
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
