"""Page ids, issued by the page's server, and the per-minute limits that use them.

Before its first report (``/answers``) or correction (``/feedback``) the page asks its server
for an id with ``POST /session`` and names it in every post. The server hands out an id
nobody can guess (``secrets``) and takes posts only with an id it handed out: an id a
client makes up is a one-line 400, so a client cannot spread a flood over ids of its own
choosing to pass the limit each id has. Handing out ids is limited too, in all: a client
that asks for id after id gets at most ``ISSUED_PER_MINUTE`` a minute, so the budget of all
pages together (``RateLimit.total``) holds however many ids it asks for.

The ids live in the server's memory only: after a restart the page is told its id is not
one, asks for a new one and posts again.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time

SESSION_PATH = "/session"
# New ids a minute, for all pages together. A person opens or reloads the page a few times
# a minute at most; a client asking for more is refused until the minute is over.
ISSUED_PER_MINUTE = 20
# Ids remembered at once; past it the one used longest ago is forgotten (its page asks again).
KEPT_IDS = 1000
# 24 random bytes: 32 URL-safe characters, never guessed
_ID_BYTES = 24
_WINDOW = 60.0


class UnknownPage(ValueError):
    """A post naming an id this server did not hand out; answered 400."""


class TooMany(ValueError):
    """More posts than the limits allow; answered 429."""


class RateLimit:
    """At most ``per_key`` events a minute per key and ``total`` a minute in all.

    A refused event counts against neither: a client past its own key's limit takes nothing
    from the others' share of ``total``.
    """

    def __init__(self, per_key: int, total: int, what: str) -> None:
        self.per_key, self.total, self.what = per_key, total, what
        self._times: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self._all: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def take(self, key: str | None, now: float | None = None) -> None:
        """Count one event for ``key`` (None: the total only), or raise ``TooMany``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            mine = self._times[key] if key is not None else collections.deque()
            for times in (self._all, mine):
                while times and times[0] <= now - _WINDOW:
                    times.popleft()
            if key is not None and len(mine) >= self.per_key:
                raise TooMany(f"more than {self.per_key} {self.what} a minute from this page")
            if len(self._all) >= self.total:
                raise TooMany(
                    f"more than {self.total} {self.what} a minute from all pages together; "
                    "try again in a minute"
                )
            mine.append(now)
            self._all.append(now)
            if len(self._times) > 2 * KEPT_IDS:  # ids long forgotten
                for stale in [k for k, v in self._times.items() if not v]:
                    del self._times[stale]


class PageIds:
    """The ids this server handed out, the most recently used ``kept`` of them."""

    def __init__(self, per_minute: int = ISSUED_PER_MINUTE, kept: int = KEPT_IDS) -> None:
        self._issuing = RateLimit(per_minute, per_minute, "page ids")
        self._kept = kept
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def issue(self, now: float | None = None) -> str:
        """A new id, or ``TooMany`` when ``ISSUED_PER_MINUTE`` went out this minute."""
        self._issuing.take(None, now)
        page = secrets.token_urlsafe(_ID_BYTES)
        with self._lock:
            self._ids[page] = None
            while len(self._ids) > self._kept:
                self._ids.popitem(last=False)
        return page

    def check(self, page: object) -> str:
        """``page`` if this server handed it out, else ``UnknownPage``."""
        with self._lock:
            if isinstance(page, str) and page in self._ids:
                self._ids.move_to_end(page)
                return page
        raise UnknownPage(
            "page is not an id this server handed out; the page asks for one with "
            f"POST {SESSION_PATH} (reload it)"
        )
