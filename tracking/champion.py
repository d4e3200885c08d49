"""The champion rule: which registered version deployment should use, and moving ``@champion``.

``@candidate`` is always the newest model that passed the parity gate; ``@champion`` moves
to it only when it beats the current champion under ``RULE``. ``decide`` and ``settle``
are the rule itself, pure; ``promote`` applies it to a registry (any object with the
operations of ``ModelRegistry``: the MLflow one is ``tracking.registry.MlflowRegistry``,
tests pass one in memory), measuring the champion on the candidate's drawn test set first
when it has no figure on it, and ``record_decision`` writes why as tags on the version.

Without a drawn test set (the digits people drew and corrected on the page) the rule
weighs the MNIST test accuracy alone, on the same test data. With one, it weighs both
sets, on the same data of each (same digests): the candidate must be strictly better on
at least one and lose no more than ``tolerance`` on the other. If the champion has no
accuracy on the candidate's drawn set (it was registered before the set existed, or on
another one, and could not be measured on it), the MNIST test set alone decides, and the
reason says so.

The rule's known weakness: each promotion may lose up to ``tolerance`` on one set, so a
run of promotions can lose more than that in all (five promotions each 0.2 points worse on
MNIST and better on the drawn set leave a champion 1 point below the one five versions
back). Every version carries both accuracies as registry tags, so a person sees the drift
by reading them down the versions.

Two machines exporting at once may both read the same champion and move the alias one
after the other, the worse model last. So after every decision the exporter settles the
alias (``settle``): it re-reads every version measured on the champion's test data and
moves ``@champion`` to a better one if there is one, until a read confirms it. With one
set "better" is a higher test accuracy and the best version wins every settle. With two
sets the rule's own relation cannot serve: it is not transitive (A may beat B within the
tolerance on one set while B beats A within it on the other), so settling on "a version
that beats the champion" could move the alias back and forth for ever. Settling uses
dominance instead: a version better on one set and no worse on the other. It never moves
the alias where the rule would not (dominance is beating with no loss at all), it only
ever moves up, so it stops, and it ends on a version that no version measured on both of
the champion's sets dominates.

A person may move the alias by hand (``tracking.lifecycle``): that pins it
(``champion_history.Pin``), and while it is pinned ``promote`` still applies the rule, to
record what it would have done, but moves nothing, and ``settle_champion`` leaves it alone.
Every move the rule or the settle makes is recorded in the alias's history
(``champion_history``), beside the people's.

No TensorFlow, MLflow or onnxruntime here: measuring a model on the drawn set is the
drawn set's own (``DrawnTestSet.accuracy``), and the registry's calls are the registry's.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from kernel.signals import deferred_signals
from tracking.champion_history import RULE as RULE_MOVE
from tracking.champion_history import SETTLE, Move, Pin, now, pin_of
from tracking.version_tags import (
    FP32,
    PromotionRecord,
    VersionTags,
    measured_on_drawn_tags,
)

RULE = (
    "a candidate becomes champion when its test accuracy is higher than the champion's on "
    "the same test data (same data digest); with a drawn test set, on the same MNIST and "
    "drawn test data (same digests of both), when it is higher on at least one of the two "
    "and lower on neither by more than the promotion tolerance (export.promotion_tolerance; "
    "the MNIST test set alone decides when the champion has no accuracy on the drawn set); "
    "a tie keeps the champion"
)

# a loss of exactly the tolerance is within it, whatever float rounding does to the difference
_ROUNDING = 1e-12


@dataclass(frozen=True)
class Standing:
    """A registered version, its test accuracy and the digest of the data it was measured on;
    and its accuracy on the drawn test set with that set's digest (None: no drawn set)."""

    version: str
    test_accuracy: float | None  # None: a version registered before the rule recorded it
    data_digest: str
    drawn_accuracy: float | None = None
    drawn_digest: str | None = None

    @property
    def on_drawn(self) -> bool:
        return self.drawn_accuracy is not None and self.drawn_digest is not None


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    candidate: Standing
    champion: Standing | None  # as it stood when the rule was applied
    tolerance: float = 0.0
    # whether both sets decided (False: MNIST's alone, with or without a drawn set)
    both_sets: bool = False
    # a person's pin that kept the rule from moving the alias (the verdict is the rule's)
    pinned: Pin | None = None

    @property
    def moved(self) -> bool:
        return self.promote and self.pinned is None


def decide(candidate: Standing, champion: Standing | None, tolerance: float = 0.0) -> Decision:
    """Apply ``RULE``: promote the candidate, or keep the champion, and say why in one line.

    ``tolerance`` is what the candidate may lose on one set while better on the other (an
    accuracy fraction); it only counts when both have a drawn accuracy on the same set.
    """
    if (
        champion is not None
        and champion.version != candidate.version
        and champion.test_accuracy is not None
        and champion.data_digest == candidate.data_digest
        and candidate.on_drawn
    ):
        if champion.on_drawn and champion.drawn_digest == candidate.drawn_digest:
            promote, reason = _two_sets(candidate, champion, tolerance)
            return Decision(promote, reason, candidate, champion, tolerance, both_sets=True)
        promote, reason = _verdict(candidate, champion)
        return Decision(
            promote, _fallback(candidate, champion) + reason, candidate, champion, tolerance
        )
    promote, reason = _verdict(candidate, champion)
    return Decision(promote, reason, candidate, champion, tolerance)


def _fallback(candidate: Standing, champion: Standing) -> str:
    drawn = f"{candidate.drawn_digest[:12]}…"
    if champion.drawn_digest is None:
        why = f"champion v{champion.version} has no accuracy on the drawn test set ({drawn})"
    else:
        why = (
            f"champion v{champion.version} was measured on another drawn test set "
            f"({champion.drawn_digest[:12]}…, candidate {drawn})"
        )
    return f"{why}, so the MNIST test set alone decides: "


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


def _two_sets(candidate: Standing, champion: Standing, tolerance: float) -> tuple[bool, str]:
    sets = {
        "MNIST test": (candidate.test_accuracy, champion.test_accuracy),
        "drawn": (candidate.drawn_accuracy, champion.drawn_accuracy),
    }
    figures = ", ".join(
        f"{name} accuracy {new:.4%} vs {old:.4%} ({(new - old) * 100:+.4f} points)"
        for name, (new, old) in sets.items()
    )
    better = [name for name, (new, old) in sets.items() if new > old]
    beyond = [name for name, (new, old) in sets.items() if old - new > tolerance + _ROUNDING]
    limit = f"the tolerance of {tolerance * 100:.4f} points"
    who = f"champion v{champion.version}"
    if not better:
        tied = all(new == old for new, old in sets.values())
        verdict = f"ties {who} on both sets" if tied else f"is better than {who} on neither set"
        return False, f"{verdict}: {figures}"
    if beyond:
        return False, (
            f"better than {who} on the {better[0]} set but lower on the {beyond[0]} set by "
            f"more than {limit}: {figures}"
        )
    if len(better) == 2:
        return True, f"beats {who} on both sets: {figures}"
    (other,) = [name for name in sets if name not in better]
    new, old = sets[other]
    within = "ties on" if new == old else f"is lower by at most {limit} on"
    return True, f"beats {who} on the {better[0]} set and {within} the {other} set: {figures}"


def _dominates(rival: Standing, champion: Standing) -> bool:
    """Better on one set and no worse on the other: beating with no loss at all."""
    pairs = [
        (rival.test_accuracy, champion.test_accuracy),
        (rival.drawn_accuracy, champion.drawn_accuracy),
    ]
    return all(new >= old for new, old in pairs) and any(new > old for new, old in pairs)


def settle(champion: Standing | None, standings: list[Standing]) -> Standing | None:
    """The version ``@champion`` must move to so that no version measured on its test data is
    better; None when it is where it belongs (or there is no champion to compare with).

    With one set (the champion has no drawn accuracy): the version with the highest test
    accuracy, the current champion staying among equals (a tie keeps the champion), else the
    oldest. With two (the champion's drawn accuracy on a drawn set): among the versions
    measured on both of its sets that dominate it (better on one, no worse on the other),
    the one with the highest sum of the two accuracies, the oldest among equals; no version
    dominates it, since dominance is transitive and raises the sum. Either way every
    exporter settling at once picks the same one, and a second settle finds nothing to do.
    """
    if champion is None or champion.test_accuracy is None:
        return None
    same_data = [
        s
        for s in standings
        if s.data_digest == champion.data_digest and s.test_accuracy is not None
    ]
    if champion.on_drawn:
        rivals = [
            s
            for s in same_data
            if s.on_drawn and s.drawn_digest == champion.drawn_digest and _dominates(s, champion)
        ]
        return min(
            rivals,
            # rounded: equal sums of different figures are equal whatever float addition does
            key=lambda s: (-round(s.test_accuracy + s.drawn_accuracy, 12), int(s.version)),
            default=None,
        )
    rivals = [s for s in same_data if s.test_accuracy > champion.test_accuracy]
    return min(rivals, key=lambda s: (-s.test_accuracy, int(s.version)), default=None)


# --- the rule applied to a registry -------------------------------------------------------------


class ModelRegistry(Protocol):
    """The operations on one registered model that moving ``@champion`` needs."""

    def alias_target(self, alias: str) -> str | None:
        """The version ``alias`` points at; None when there is no such alias."""

    def set_alias(self, alias: str, version: str) -> None: ...

    def version_tags(self, version: str) -> dict[str, str]: ...

    def all_version_tags(self) -> dict[str, dict[str, str]]:
        """Every version with its tags, in one read."""

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        """Set ``tags`` on the version one by one, in their order."""

    def version_onnx_bytes(self, version: str) -> bytes:
        """The version's ONNX model; raises when it cannot be had."""

    def delete_alias(self, alias: str) -> None: ...

    def model_tags(self) -> dict[str, str]:
        """The registered model's own tags (the aliases' history and pins)."""

    def set_model_tag(self, key: str, value: str) -> None: ...

    def delete_model_tag(self, key: str) -> None: ...


class DrawnTestSet(Protocol):
    """A drawn test set the champion can be measured on: its digest and a model's accuracy."""

    @property
    def digest(self) -> str: ...

    def accuracy(self, model_bytes: bytes) -> float: ...


def standing_from_tags(
    version: str, tags: Mapping[str, str], drawn_digest: str | None = None
) -> Standing:
    """A version's standing from its tags; with ``drawn_digest``, its accuracy on that drawn
    set if it has one (else the digest of the drawn set it was measured on, if any)."""
    record = VersionTags.from_tags(tags)
    standing = Standing(version, record.test_accuracy, record.test_data_digest or "")
    if drawn_digest is None:
        return standing
    accuracy = record.accuracy_on_drawn(drawn_digest)
    if accuracy is not None:
        return replace(standing, drawn_accuracy=accuracy, drawn_digest=drawn_digest)
    return replace(standing, drawn_digest=record.drawn.digest if record.drawn else None)


def current_champion(
    registry: ModelRegistry, alias: str, drawn_digest: str | None = None
) -> Standing | None:
    current = registry.alias_target(alias)
    if current is None:
        return None
    return standing_from_tags(current, registry.version_tags(current), drawn_digest)


def promote(
    registry: ModelRegistry,
    candidate: Standing,
    alias: str,
    *,
    tolerance: float = 0.0,
    drawn: DrawnTestSet | None = None,
    program: str,
    by: str,
) -> Decision:
    """Apply the rule to ``candidate``: move ``alias`` to it or not; then settle the alias
    against every version. With ``drawn`` (the candidate's drawn set), a champion that has
    no accuracy on it is measured on it first. ``program`` starts each line printed; ``by``
    is who runs the export, recorded with each move. A pinned alias is not moved: the
    decision says what the rule would have done and that the pin held it."""
    champion = current_champion(registry, alias, candidate.drawn_digest)
    if drawn is not None and _to_be_measured(champion, candidate):
        champion = measure_on_drawn(registry, champion, drawn, program=program)
    decision = decide(candidate, champion, tolerance)
    pin = pin_of(registry.model_tags(), alias)
    if pin is not None:
        return replace(decision, pinned=pin)
    if decision.promote:
        with deferred_signals():
            registry.set_alias(alias, candidate.version)
        record_move(
            registry,
            Move(
                alias,
                champion.version if champion else None,
                candidate.version,
                by,
                RULE_MOVE,
                decision.reason,
                now(),
            ),  # fmt: skip
        )
    settle_champion(registry, alias, candidate.drawn_digest, program=program, by=by)
    return decision


def record_move(registry: ModelRegistry, move: Move) -> None:
    """Add ``move`` to the alias's history, kept on the registered model."""
    registry.set_model_tag(move.key(), move.value())


def _to_be_measured(champion: Standing | None, candidate: Standing) -> bool:
    """Whether the rule would weigh the drawn set if only the champion had a figure on it."""
    return (
        champion is not None
        and champion.version != candidate.version
        and champion.test_accuracy is not None
        and champion.data_digest == candidate.data_digest
        and not (champion.on_drawn and champion.drawn_digest == candidate.drawn_digest)
    )


def measure_on_drawn(
    registry: ModelRegistry, champion: Standing, drawn: DrawnTestSet, *, program: str
) -> Standing:
    """The champion's standing with its registered model's accuracy on ``drawn``, recorded
    on its version (``drawn_accuracy.<digest>``); as it was, with a warning, when its model
    cannot be had or run (the MNIST test set alone then decides, and the reason says so)."""
    try:
        accuracy = drawn.accuracy(registry.version_onnx_bytes(champion.version))
    except Exception as err:  # a download or onnxruntime failure, of whatever kind: no figure
        message = getattr(err, "message", None) or str(err)
        first = (message.strip().splitlines() or [type(err).__name__])[0]
        print(
            f"{program}: warning: champion v{champion.version}'s model could not be measured "
            f"on the drawn test set, so the MNIST test set alone decides: {first}",
            file=sys.stderr,
        )
        return champion
    registry.tag_version(champion.version, measured_on_drawn_tags(drawn.digest, accuracy))
    return replace(champion, drawn_accuracy=accuracy, drawn_digest=drawn.digest)


def settle_champion(
    registry: ModelRegistry,
    alias: str,
    drawn_digest: str | None = None,
    *,
    program: str,
    by: str,
    rounds: int = 10,
) -> None:
    """Move ``alias`` to a better version on its test data until a read confirms it
    (another machine may move it between our read and our write). With ``drawn_digest``,
    the versions' accuracies on that drawn set count too (``settle``). Only handed-off
    fp32 versions count: one still being handed off may yet be withdrawn. A pinned alias
    stays where the person put it."""
    for _ in range(rounds):
        if pin_of(registry.model_tags(), alias) is not None:
            return
        versions = registry.all_version_tags()
        current = registry.alias_target(alias)
        champion = (
            standing_from_tags(current, versions.get(current, {}), drawn_digest)
            if current
            else None
        )
        fp32 = [
            standing_from_tags(version, tags, drawn_digest)
            for version, tags in versions.items()
            if _settles_on(VersionTags.from_tags(tags))
        ]
        better = settle(champion, fp32)
        if better is None:
            return
        with deferred_signals():
            registry.set_alias(alias, better.version)
        why = f"better than v{champion.version} {_settled_how(champion)}"
        record_move(registry, Move(alias, champion.version, better.version, by, SETTLE, why, now()))
        print(f"{program}: @{alias} settled on v{better.version}, {why}", file=sys.stderr)


def _settles_on(record: VersionTags) -> bool:
    return record.precision == FP32 and record.handed_off


def _settled_how(champion: Standing) -> str:
    if champion.on_drawn:
        return (
            "on one of the MNIST test and drawn sets and no worse on the other (another "
            "export moved it meanwhile, or promotions within the tolerance left it behind)"
        )
    return "on the same test data (another export moved it meanwhile)"


def promotion_record(decision: Decision, decided_by: str) -> PromotionRecord:
    """Why the candidate was promoted or not, as its version's tags keep it."""
    champion, candidate = decision.champion, decision.candidate
    drawn = {}
    if candidate.on_drawn:
        drawn = {
            "sets": "MNIST test and drawn" if decision.both_sets else "MNIST test",
            "tolerance": decision.tolerance,
            "drawn_digest": candidate.drawn_digest,
            "candidate_drawn_accuracy": candidate.drawn_accuracy,
            "champion_drawn_accuracy": (
                champion.drawn_accuracy if champion and decision.both_sets else None
            ),
        }
    reason = decision.reason
    if decision.pinned is not None:
        verdict = "would have promoted it" if decision.promote else "would not have promoted it"
        reason = (
            f"@{decision.pinned.alias} is {decision.pinned.said()}: the rule {verdict}: {reason}"
        )
    return PromotionRecord(
        rule=RULE,
        reason=reason,
        promoted=decision.moved,
        decided_by=decided_by,
        candidate_accuracy=candidate.test_accuracy,
        champion_version=champion.version if champion else None,
        champion_accuracy=champion.test_accuracy if champion else None,
        **drawn,
    )


def record_decision(
    registry: ModelRegistry, version: str, decision: Decision, decided_by: str
) -> None:
    """Tag the version with why it was promoted or not, after the alias moved (or not)."""
    registry.tag_version(version, promotion_record(decision, decided_by).to_tags())
