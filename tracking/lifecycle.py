"""A person's moves of ``@champion`` (promote, rollback, unpin), ``@int8`` following it, and
the history they leave.

The champion rule (``tracking.champion``) moves ``@champion`` in an export; a person moves
it here, with a reason, and that pins it (``champion_history.Pin``): later exports apply
the rule, say what it would have done, and leave the alias where the person put it, until
the person promotes again or unpins. Each move, the rule's and the people's, is one record
of the alias's history on the registered model, so every clone and the team server read
the same one. ``@int8`` is always the int8 twin of ``@champion``: the newest handed-off
int8 version made from it; when the champion has none, ``@int8`` is removed and a line
says why. Nothing is moved on a bad request: every check comes before the first write.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from kernel.cli import CommandError
from kernel.signals import deferred_signals
from tracking.champion import ModelRegistry, record_move
from tracking.champion_history import (
    PROMOTE,
    ROLLBACK,
    UNPIN,
    Move,
    Pin,
    history,
    now,
    pin_key,
    pin_of,
    previous_champion,
)
from tracking.version_tags import INT8, VersionTags


@dataclass(frozen=True)
class Aliases:
    """The registered model's aliases that this module moves."""

    champion: str
    int8: str


def int8_twin(versions: dict[str, dict[str, str]], fp32_version: str) -> str | None:
    """The newest handed-off int8 version made from ``fp32_version``."""
    twins = [
        version
        for version, tags in versions.items()
        if (record := VersionTags.from_tags(tags)).precision == INT8
        and record.handed_off
        and record.int8 is not None
        and record.int8.fp32_version == fp32_version
    ]
    return max(twins, key=int, default=None)


def follow_champion(registry: ModelRegistry, aliases: Aliases, *, program: str) -> str | None:
    """Point ``@int8`` at the int8 twin of ``@champion``, or remove it when there is none;
    the line that says what changed (None: it was where it belongs)."""
    champion = registry.alias_target(aliases.champion)
    current = registry.alias_target(aliases.int8)
    twin = int8_twin(registry.all_version_tags(), champion) if champion else None
    if twin == current:
        return None
    if twin is not None:
        with deferred_signals():
            registry.set_alias(aliases.int8, twin)
        return (
            f"{program}: @{aliases.int8} is v{twin}, the int8 twin of "
            f"@{aliases.champion} v{champion}"
        )
    with deferred_signals():
        registry.delete_alias(aliases.int8)
    why = (
        f"@{aliases.champion} v{champion} has no int8 twin that passed its gate (yet: "
        "quantize makes it after an export)"
        if champion
        else f"there is no @{aliases.champion}"
    )
    return f"{program}: @{aliases.int8} removed: {why}"


def _check_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise CommandError('a reason is required: --reason "why this version"')
    return reason


def _check_promotable(versions: dict[str, dict[str, str]], version: str, name: str) -> None:
    if version not in versions:
        known = ", ".join(sorted(versions, key=int)) or "none"
        raise CommandError(f"{name} has no version {version!r} (its versions: {known})")
    record = VersionTags.from_tags(versions[version])
    if record.precision != "fp32":
        origin = record.int8.fp32_version if record.int8 else "unknown"
        raise CommandError(
            f"{name} v{version} is an int8 model (of fp32 v{origin}): @champion names an fp32 "
            "version, and @int8 follows it"
        )
    if not record.handed_off:
        raise CommandError(
            f"{name} v{version}'s hand-off did not finish (no handed_off tag): its files may "
            "never have been written; export it again"
        )


def move_champion(
    registry: ModelRegistry,
    name: str,
    aliases: Aliases,
    version: str,
    reason: str,
    *,
    by: str,
    how: str = PROMOTE,
) -> list[str]:
    """A person moves ``@champion`` to ``version`` and pins it there; the lines to print."""
    reason = _check_reason(reason)
    versions = registry.all_version_tags()
    _check_promotable(versions, version, name)
    current = registry.alias_target(aliases.champion)
    if current == version:
        raise CommandError(f"v{version} is @{aliases.champion} already: nothing to move")
    at = now()
    with deferred_signals():
        registry.set_alias(aliases.champion, version)
        registry.set_model_tag(
            pin_key(aliases.champion), Pin(aliases.champion, version, by, reason, at).value()
        )
        record_move(registry, Move(aliases.champion, current, version, by, how, reason, at))
    source = f"v{current}" if current else "(none)"
    followed = follow_champion(registry, aliases, program="tracking")
    return [
        f"tracking: @{aliases.champion} {source} -> v{version} ({how} by {by}: {reason}); "
        f"pinned: exports leave it there until `unpin`",
        *([followed] if followed else []),
    ]


def rollback(
    registry: ModelRegistry, name: str, aliases: Aliases, reason: str, *, by: str
) -> list[str]:
    """Move ``@champion`` back to the version it named before its last move, and pin it."""
    reason = _check_reason(reason)
    current = registry.alias_target(aliases.champion)
    previous = previous_champion(history(registry.model_tags(), aliases.champion), current)
    if previous is None:
        raise CommandError(
            f"@{aliases.champion} (v{current}) has no previous champion in its history: "
            "nothing to roll back to; `promote VERSION` names one"
            if current
            else f"{name} has no @{aliases.champion}: nothing to roll back"
        )
    return move_champion(registry, name, aliases, previous, reason, by=by, how=ROLLBACK)


def unpin(registry: ModelRegistry, aliases: Aliases, reason: str, *, by: str) -> list[str]:
    """Hand ``@champion`` back to the rule: the next export applies it as usual."""
    reason = _check_reason(reason)
    pin = pin_of(registry.model_tags(), aliases.champion)
    if pin is None:
        raise CommandError(f"@{aliases.champion} is not pinned: the rule moves it already")
    current = registry.alias_target(aliases.champion)
    with deferred_signals():
        registry.delete_model_tag(pin_key(aliases.champion))
        record_move(registry, Move(aliases.champion, current, current, by, UNPIN, reason, now()))
    return [
        f"tracking: @{aliases.champion} unpinned by {by} (was {pin.said()}): the next "
        "export's champion rule decides again"
    ]


def history_lines(registry: ModelRegistry, aliases: Aliases, last: int | None = None) -> list[str]:
    """The alias's moves, oldest first (the ``last`` ones), then where it stands."""
    tags = registry.model_tags()
    moves = history(tags, aliases.champion)
    shown = moves[-last:] if last else moves
    lines = [move.line() for move in shown] or [f"no recorded move of @{aliases.champion} yet"]
    current = registry.alias_target(aliases.champion)
    pin = pin_of(tags, aliases.champion)
    stand = f"@{aliases.champion} is v{current}" if current else f"no @{aliases.champion}"
    lines.append(stand + (f", {pin.said()}" if pin else ", moved by the champion rule"))
    return lines


def print_lines(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr)
