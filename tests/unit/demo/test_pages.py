"""``demo.pages``: page ids are handed out by the server, a few a minute in all, and only they
are taken; the limits a minute count per id and in all, and forget after a minute."""

from __future__ import annotations

import json
import re

import pytest

from feedback.store import FeedbackStore
from monitor.request_log import ServedModel


def test_ids_are_unguessable_and_only_those_handed_out_are_taken(pages) -> None:
    ids = pages.PageIds()
    handed = [ids.issue(now=float(k)) for k in range(5)]
    assert len(set(handed)) == 5
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", page) for page in handed), handed
    assert [ids.check(page) for page in handed] == handed
    for made_up in ("page-0123456789", handed[0][:-1], handed[0] + "x", "", None, 7):
        with pytest.raises(pages.UnknownPage, match="not an id this server handed out"):
            ids.check(made_up)


def test_handing_out_ids_is_limited_in_all_and_forgets_after_a_minute(pages) -> None:
    ids = pages.PageIds(per_minute=3)
    for k in range(3):
        ids.issue(now=float(k))
    with pytest.raises(pages.TooMany, match="more than 3 page ids a minute from all pages"):
        ids.issue(now=10.0)
    ids.issue(now=60.5)


def test_the_id_used_longest_ago_is_forgotten_past_the_number_kept(pages) -> None:
    ids = pages.PageIds(kept=2)
    first, second = ids.issue(), ids.issue()
    ids.check(first)  # used: the second is now the one used longest ago
    third = ids.issue()
    assert ids.check(first) == first and ids.check(third) == third
    with pytest.raises(pages.UnknownPage):
        ids.check(second)


def test_the_rate_limit_counts_per_key_and_in_all_and_forgets_after_a_minute(pages) -> None:
    limit = pages.RateLimit(per_key=2, total=3, what="corrections")
    limit.take("a", now=0.0)
    limit.take("a", now=1.0)
    with pytest.raises(pages.TooMany, match="more than 2 corrections a minute from this page"):
        limit.take("a", now=2.0)
    limit.take("b", now=3.0)  # a's refusal took nothing from the total
    with pytest.raises(pages.TooMany, match="more than 3 corrections a minute from all pages"):
        limit.take("c", now=4.0)
    limit.take("a", now=61.0)


def test_post_session_hands_out_ids_a_few_a_minute_and_takes_only_an_empty_object(
    running, answers, pages, tmp_path
) -> None:
    from monitor.request_log import RequestLog

    log = RequestLog(tmp_path / "log", "page")
    taker = answers.PageAnswers(log, {"fp32": ServedModel("m", "1")}, pages.PageIds(per_minute=2))
    _, client = running(answers=taker)
    try:
        status, text = client.request("POST", "/session", "{}")
        assert status == 201 and re.fullmatch(r"[A-Za-z0-9_-]{32}", json.loads(text)["page"])
        for body in ('{"page": "mine"}', "[]", "not json"):
            status, text = client.request("POST", "/session", body)
            assert status == 400 and text.count("\n") == 1, (body, text)
        status, text = client.request("POST", "/session", "{}", {"Origin": "http://evil.example"})
        assert status == 403, text
        assert client.request("POST", "/session", "{}")[0] == 201
        status, text = client.request("POST", "/session", "{}")
        assert status == 429 and "more than 2 page ids a minute" in text, text
    finally:
        log.close()


def test_answers_and_corrections_share_one_issuer_or_the_server_refuses_them(
    running, answers, feedback, pages, tmp_path
) -> None:
    from monitor.request_log import RequestLog

    log = RequestLog(tmp_path / "log", "page")
    store = FeedbackStore(tmp_path / "store")
    models = {"fp32": ServedModel("m", "1")}
    try:
        with pytest.raises(ValueError, match="two PageIds"):
            running(
                answers=answers.PageAnswers(log, models),
                feedback=feedback.PageFeedback(store, models),
            )
    finally:
        log.close()
