"""A person's review of the corrections waiting in the feedback store's ``pending/`` folder.

``python -m demo.feedback review`` lists every correction waiting (its digest, the label it
was given, the model's answer, when, and the page id the server handed the page that sent
it); ``review accept`` moves the chosen ones into the store, where the feedback stage finds
them, and ``review drop`` moves them to ``pending/dropped/``, where nothing reads them and
from where the same image is not taken again. A choice that names nothing waiting, or a file
that is no correction, stops the command with one line before anything is moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from demo.answers import short
from feedback.record import SUFFIX, CorrectionRecord
from feedback.store import REVIEW_COMMAND, FeedbackStore
from kernel.cli import CommandError

# a reviewer types the start of a digest; shorter starts would match too many
MIN_PREFIX = 6
_HOW = REVIEW_COMMAND


@dataclass(frozen=True)
class Waiting:
    """One correction waiting for review, as its file says; ``problem`` when it is none."""

    digest: str
    path: Path
    label: object = None
    answer: object = None
    time: str = ""
    page: str = ""
    model: str = ""
    problem: str | None = None


def waiting(store: FeedbackStore) -> list[Waiting]:
    """Every correction in the pending folder, oldest first."""
    found = [_shown(path, read) for path, read in store.waiting()]
    return sorted(found, key=lambda item: (item.time, item.digest))


def _shown(path: Path, read: CorrectionRecord | Exception) -> Waiting:
    """A waiting file as the list shows it: its record's fields, or what makes it none."""
    digest = path.name.removesuffix(SUFFIX)
    if not isinstance(read, CorrectionRecord):
        return Waiting(digest, path, problem=str(read))
    return Waiting(
        digest,
        path,
        read.label,
        read.answer,
        _text(read.time),
        _text(read.page, 64),
        f"{_text(read.model)} v{_text(read.version)}",
    )


def _text(value: object, limit: int = 32) -> str:
    """A field as the list shows it: a string as it is (cut short, on one line), else its repr."""
    if not isinstance(value, str):
        return short(value, limit)
    text = value.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def choose(
    items: Sequence[Waiting], digests: Sequence[str], page: str | None, everything: bool
) -> list[Waiting]:
    """The waiting corrections a reviewer named: digests (or unique starts), a page id, or all."""
    if everything and (digests or page):
        raise CommandError("--all takes no DIGEST and no --page")
    if not (everything or digests or page):
        raise CommandError("name what to decide on: DIGEST..., --page ID or --all")
    if everything:
        return list(items)
    chosen = {}
    for start in digests:
        matches = [item for item in items if item.digest.startswith(start.lower())]
        if len(start) < MIN_PREFIX or len(matches) > 1:
            raise CommandError(
                f"{short(start)} is the start of {len(matches)} waiting digests; give at "
                f"least {MIN_PREFIX} characters, enough for one"
            )
        if not matches:
            raise CommandError(f"{short(start)}: no correction waits under that digest ({_HOW})")
        chosen[matches[0].digest] = matches[0]
    if page:
        from_page = [item for item in items if item.page == page]
        if not from_page:
            raise CommandError(f"no correction waits from page {short(page)} ({_HOW})")
        chosen.update((item.digest, item) for item in from_page)
    return list(chosen.values())


def accept(store: FeedbackStore, items: Sequence[Waiting]) -> int:
    """Move ``items`` into the store, where the feedback stage reads them; how many are new
    there (an image accepted already keeps its first label)."""
    bad = [item for item in items if item.problem]
    if bad:
        raise CommandError(
            f"{bad[0].digest}: not a correction the page's server wrote ({bad[0].problem}); "
            f"drop it ({_HOW} drop {bad[0].digest})"
        )
    return store.accept(item.path for item in items)


def drop(store: FeedbackStore, items: Sequence[Waiting]) -> int:
    """Move ``items`` to the dropped folder, where nothing reads them; how many."""
    return store.drop(item.path for item in items)


def run(
    store: FeedbackStore, action: str | None, digests: Sequence[str], page: str | None, all_: bool
) -> int:
    """``review`` as the command line put it: list, accept or drop; prints what it did."""
    items = waiting(store)
    if action is None:
        if digests or page or all_:
            raise CommandError("say accept or drop before what to decide on")
        _list(store, items)
        return 0
    if all_ and not items:
        print(f"feedback: nothing waits for review in {store.pending}")
        return 0
    chosen = choose(items, digests, page, all_)
    if action == "accept":
        added = accept(store, chosen)
        said = f"accepted {len(chosen)} ({added} new in {store.folder})"
    else:
        said = f"dropped {drop(store, chosen)}"
    print(
        f"feedback: {said}; {store.folder} holds {store.count()} accepted, "
        f"{store.pending_count()} waiting"
    )
    return 0


def _list(store: FeedbackStore, items: Sequence[Waiting]) -> None:
    if not items:
        print(
            f"feedback: nothing waits for review in {store.pending}; {store.folder} holds "
            f"{store.count()} accepted"
        )
        return
    print(f"{'DIGEST':32}  LABEL  ANSWER  {'TIME':20}  {'PAGE':32}  MODEL")
    for item in items:
        if item.problem:
            print(f"{item.digest:32}  not a correction: {item.problem}")
            continue
        print(
            f"{item.digest:32}  {item.label:>5}  {item.answer:>6}  {item.time:20}  "
            f"{item.page:32}  {item.model}"
        )
    print(
        f"feedback: {len(items)} waiting for review in {store.pending}; {_HOW} accept "
        "DIGEST... (or --page ID, or --all) takes them for training, drop DIGEST... does not"
    )
