"""``@champion``'s history and pin, kept on the registered model itself as tags.

Every move of the alias is one tag, ``<alias>.move.<UTC time>-<token>``, whose value is a
JSON record: when, from which version to which, by whom (the member or local user who ran
the command or the export) and how (``rule``: the champion rule in an export; ``settle``:
an export settling the alias after another moved it; ``promote``, ``rollback``: a person;
``unpin``: a person handing the alias back to the rule), and why. A tag per move rather
than one list: two exporters recording at once each add their own tag, and neither
overwrites the other's. The keys sort by time, so reading them in order is the history.

A person's move pins the alias (``<alias>.pin``: the version, who, when, why): the rule
and the settle of later exports leave it there until the person promotes again or
unpins. Kept in the registry, the history and the pin are the same for every clone and on
a team server, where each record must name its sender and no move can be rewritten.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

RULE = "rule"
SETTLE = "settle"
PROMOTE = "promote"
ROLLBACK = "rollback"
UNPIN = "unpin"
HOW = (RULE, SETTLE, PROMOTE, ROLLBACK, UNPIN)
# what a person decides: the rule's and the settle's moves are an export's
BY_A_PERSON = (PROMOTE, ROLLBACK, UNPIN)


def move_prefix(alias: str) -> str:
    return f"{alias}.move."


def pin_key(alias: str) -> str:
    return f"{alias}.pin"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Move:
    """One move of the alias (``to`` None: the alias was removed; ``source`` None: it was new)."""

    alias: str
    source: str | None
    to: str | None
    by: str
    how: str
    reason: str
    at: str

    def key(self) -> str:
        compact = self.at.replace("-", "").replace(":", "")
        return f"{move_prefix(self.alias)}{compact}-{secrets.token_hex(3)}"

    def value(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_value(cls, value: str) -> Move:
        try:
            record = json.loads(value)
            move = cls(**{name: record[name] for name in cls.__dataclass_fields__})
        except (json.JSONDecodeError, TypeError, KeyError) as err:
            raise ValueError(f"not a move record ({type(err).__name__}: {err})") from None
        if move.how not in HOW:
            raise ValueError(f"a move record's how is {move.how!r}: expected one of {HOW}")
        return move

    def who(self) -> str:
        """``alice`` for a person's move, ``the rule (export by alice)`` for an export's."""
        if self.how in BY_A_PERSON:
            return self.by
        return f"the {'rule' if self.how == RULE else 'settle'} (export by {self.by})"

    def line(self) -> str:
        source = f"v{self.source}" if self.source else "(none)"
        to = f"v{self.to}" if self.to else "(removed)"
        return (
            f"{self.at[:19]}Z  {self.how:<8} {source:>7} -> {to:<9} by {self.who()}: {self.reason}"
        )


@dataclass(frozen=True)
class Pin:
    """A person's move holds the alias: the rule leaves it on ``version`` until unpinned."""

    alias: str
    version: str
    by: str
    reason: str
    at: str

    def value(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_value(cls, value: str) -> Pin:
        try:
            record = json.loads(value)
            return cls(**{name: str(record[name]) for name in cls.__dataclass_fields__})
        except (json.JSONDecodeError, TypeError, KeyError) as err:
            raise ValueError(f"not a pin record ({type(err).__name__}: {err})") from None

    def said(self) -> str:
        return f"pinned to v{self.version} by {self.by} ({self.reason})"


def history(model_tags: Mapping[str, str], alias: str) -> list[Move]:
    """Every recorded move of ``alias``, oldest first."""
    prefix = move_prefix(alias)
    return [
        Move.from_value(model_tags[key]) for key in sorted(model_tags) if key.startswith(prefix)
    ]


def pin_of(model_tags: Mapping[str, str], alias: str) -> Pin | None:
    value = model_tags.get(pin_key(alias))
    return Pin.from_value(value) if value else None


def previous_champion(moves: list[Move], current: str | None) -> str | None:
    """The version the alias named before it moved to ``current`` the last time."""
    for move in reversed(moves):
        if move.to == current and move.source and move.source != current:
            return move.source
    return None
