"""A person's review of the corrections waiting in the feedback store's ``pending/`` folder.

``python -m demo.feedback review`` lists every correction waiting (its digest, the label it
was given, the model's answer, when, and the page id the server handed the page that sent
it); ``review accept`` moves the chosen ones into the store, where the feedback stage finds
them, and ``review drop`` moves them to ``pending/dropped/``, where nothing reads them and
from where the same image is not taken again. A choice that names nothing waiting, or a file
that is no correction, stops the command with one line before anything is moved.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from demo.answers import PIXELS, AnswerError, number_list, short
from demo.feedback import RECORD_SUFFIX, FeedbackStore
from kernel.cli import CommandError

# a reviewer types the start of a digest; shorter starts would match too many
MIN_PREFIX = 6
_HOW = "python -m demo.feedback review"


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
    if not store.pending.is_dir():
        return []
    found = [_read(path) for path in store.pending.glob(f"*{RECORD_SUFFIX}")]
    return sorted(found, key=lambda item: (item.time, item.digest))


def _read(path: Path) -> Waiting:
    digest = path.name.removesuffix(RECORD_SUFFIX)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        return Waiting(digest, path, problem=f"not JSON ({short(str(err), 60)})")
    if not isinstance(record, dict):
        return Waiting(digest, path, problem="not a JSON object")
    return Waiting(
        digest,
        path,
        record.get("label"),
        record.get("answer"),
        _text(record.get("time")),
        _text(record.get("page"), 64),
        f"{_text(record.get('model'))} v{_text(record.get('version'))}",
        _problem(record, digest),
    )


def _text(value: object, limit: int = 32) -> str:
    """A field as the list shows it: a string as it is (cut short, on one line), else its repr."""
    if not isinstance(value, str):
        return short(value, limit)
    text = value.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _problem(record: dict, digest: str) -> str | None:
    """What makes ``record`` no correction the feedback stage takes, or None."""
    try:
        number_list(record.get("image"), PIXELS, "image", 255)
    except AnswerError as err:
        return str(err)
    for key in ("label", "answer"):
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
            return f"{key} = {short(value)}: expected a digit 0..9"
    if record.get("digest") != digest:
        return "the file is not named by the digest it holds"
    return None


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
    added = 0
    for item in items:
        try:
            os.link(item.path, store.folder / item.path.name)  # never replaces an accepted one
            added += 1
        except FileExistsError:
            pass
        item.path.unlink()
    return added


def drop(store: FeedbackStore, items: Sequence[Waiting]) -> int:
    """Move ``items`` to the dropped folder, where nothing reads them; how many."""
    store.pending_folder()
    for item in items:
        os.replace(item.path, store.dropped / item.path.name)
    return len(items)


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
