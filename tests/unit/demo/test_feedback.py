"""``POST /feedback`` on the page's server (in this process, on loopback): a correction from a
page id the server handed out waits for review in the store's ``pending/`` folder, once per
image, with the version the server knows, readable by its owner only; every bad submission is
a 4xx with one line and nothing kept; page ids the client makes up are refused; one page
cannot flood the store, nor many pages past the budget of all."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest

from feedback.store import FeedbackStore
from monitor.request_log import ServedModel, image_digest

FP32 = ServedModel("mnist-digits", "4", "champion")
PER_PAGE, IN_ALL = 5, 8


def _image(shift: int = 0) -> np.ndarray:
    image = np.zeros((28, 28), dtype=np.float32)
    image[4:24, 12 + shift : 16 + shift] = 255
    return image


@pytest.fixture
def server(tmp_path, running, feedback, pages):
    store = FeedbackStore(tmp_path / "store")
    limit = pages.RateLimit(PER_PAGE, IN_ALL, "corrections")
    page_feedback = feedback.PageFeedback(store, {"fp32": FP32}, pages.PageIds(), limit)
    _, client = running(feedback=page_feedback)
    return client, tmp_path / "store"


def _correction(page: str | None, **change) -> str:
    report = {
        "page": page,
        "model": "fp32",
        "image": _image().ravel().tolist(),
        "answer": 7,
        "label": 1,
    }
    report.update(change)
    return json.dumps({k: v for k, v in report.items() if v is not None})


def _pixel(text: str) -> str:
    """A correction whose last pixel is ``text`` as it is (JSON json.dumps would not write)."""
    return _correction("", image=[255] * 783 + ["@"]).replace('"@"', text)


def _kept(folder) -> list[dict]:
    """What the store holds, accepted or waiting."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("**/*.json"))]


def test_a_correction_waits_for_review_once_per_image_with_the_servers_version(server) -> None:
    client, folder = server
    assert client.request("GET", "/feedback") == (200, '{"count": 0, "pending": 0}')
    page = client.session()
    status, text = client.request("POST", "/feedback", _correction(page))
    assert (status, json.loads(text)) == (201, {"stored": True, "count": 0, "pending": 1})
    # the same image again, from another page, with another label: the first one stays
    status, text = client.request("POST", "/feedback", _correction(client.session(), label=2))
    assert (status, json.loads(text)) == (200, {"stored": False, "count": 0, "pending": 1})
    other = _correction(page, image=_image(3).ravel().tolist())
    status, text = client.request("POST", "/feedback", other)
    assert (status, json.loads(text)) == (201, {"stored": True, "count": 0, "pending": 2})
    assert not list(folder.glob("*.json")), "nothing reaches the stage's folder unreviewed"
    records = {r["digest"]: r for r in _kept(folder / "pending")}
    first = records[image_digest(_image())]
    assert (first["label"], first["answer"], first["version"], first["alias"]) == (
        1, 7, "4", "champion",
    )  # fmt: skip
    assert first["page"] == page, "each record names the page id that sent it"
    assert np.array(first["image"]).reshape(28, 28).tolist() == _image().tolist()
    assert not list(folder.glob("**/.partial-*")), "no half-written file left"
    assert client.request("GET", "/feedback") == (200, '{"count": 0, "pending": 2}')


def test_records_and_the_pending_folder_are_the_owners_only_and_git_and_dvc_pass_them_by(
    server,
) -> None:
    client, folder = server
    assert client.request("POST", "/feedback", _correction(client.session()))[0] == 201
    (record,) = (folder / "pending").glob("*.json")
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "pending").stat().st_mode) == 0o700
    for name in (".gitignore", ".dvcignore"):
        assert (folder / "pending" / name).read_text() == "*\n", name


BAD = [
    ("not json", "the body is not JSON"),
    (_correction("", extra=1), "expected an object with keys"),
    (_correction("", model="int8"), "model 'int8' is not one this page serves"),
    (_correction("", label=10), "label = 10: expected a digit 0..9"),
    (_correction("", label=-1), "label = -1: expected a digit 0..9"),
    (_correction("", label="3"), "label = '3': expected a digit 0..9"),
    (_correction("", label=True), "label = True: expected a digit 0..9"),
    (_correction("", answer=12), "answer = 12: expected a digit 0..9"),
    (_correction("", image=[0] * 100), "image has 100 values; expected a list of 784 numbers"),
    (_correction("", image=[300] * 784), "image values must be pixel values 0..255"),
    (_correction("", image=[-0.5] * 784), "image values must be pixel values 0..255"),
    (_correction("", image=[False] * 784), "image holds False, which is not a number"),
    (_correction("", image=[0] * 784), "the image is blank"),
    (_correction("", image=[100] * 784), "the image is blank"),
    (_correction(7), "page = 7: expected the id the server gave the page"),
    # numbers that cannot be pixels or digits, however JSON writes them
    (_pixel("9" * 4000), "image values must be pixel values 0..255; found a number of 4000"),
    (_pixel("9" * 5000), "image values must be pixel values 0..255; found a number of 5000"),
    (_pixel("1e400"), "image values must be pixel values 0..255; found inf"),
    (_pixel("NaN"), "image values must be pixel values 0..255; found nan"),
    (_pixel("true"), "image holds True, which is not a number"),
    (_correction("", label="@").replace('"@"', "9" * 4000), "label = a number of 4000 digits"),
    (_correction("", label="@").replace('"@"', "9" * 5000), "label = a number of 5000 digits"),
    (_correction("", label="@").replace('"@"', "4.0"), "label = 4.0: expected a digit"),
]


@pytest.mark.parametrize(("body", "said"), BAD)
def test_a_bad_submission_is_400_with_one_line_and_nothing_kept(server, body, said) -> None:
    client, folder = server
    body = body.replace('"page": ""', json.dumps({"page": client.session()})[1:-1])
    status, text = client.request("POST", "/feedback", body)
    assert status == 400 and said in text and text.count("\n") == 1, text
    assert len(text) < 300, "a line, however long what was sent"
    assert _kept(folder) == []


def test_page_ids_the_client_chose_are_refused_and_leave_the_budget_whole(server) -> None:
    client, folder = server
    for k in range(30):  # a new id of its own every time: none of them is the server's
        body = _correction(f"page-of-my-own-{k:04d}", label=k % 10)
        status, text = client.request("POST", "/feedback", body)
        assert status == 400 and "not an id this server handed out" in text, text
    assert _kept(folder) == []
    assert client.request("POST", "/feedback", _correction(client.session()))[0] == 201


def test_other_origins_types_hosts_and_oversized_bodies_are_refused(server) -> None:
    client, folder = server
    page = client.session()
    refused = [
        ({"Origin": "http://evil.example"}, 403),
        ({"Content-Type": "text/plain"}, 415),
        ({"Host": "evil.example:8120"}, 400),
        ({"Host": "localhost.evil.example"}, 400),
    ]
    for headers, status in refused:
        got, text = client.request("POST", "/feedback", _correction(page), headers)
        assert got == status and text.count("\n") == 1, (headers, text)
    status, text = client.request("POST", "/feedback", b"x" * (64 * 1024 + 1))
    assert status == 413 and "at most" in text
    assert _kept(folder) == []


def _shifted(page: str, k: int) -> str:
    """A correction of its own image for each ``k`` below 20."""
    return _correction(page, image=_image(k - 8).ravel().tolist(), label=k % 10, answer=k % 10)


def test_one_page_is_limited_per_minute_and_so_are_all_pages(server) -> None:
    client, folder = server
    flooder, honest = client.session(), client.session()
    statuses = [client.request("POST", "/feedback", _shifted(flooder, k))[0] for k in range(8)]
    assert statuses == [201] * PER_PAGE + [429] * 3, statuses
    # past its own limit, the flooder took nothing from the honest page
    status, text = client.request("POST", "/feedback", _shifted(honest, 12))
    assert status == 201, text
    many = [client.session() for _ in range(3)]
    statuses = [
        client.request("POST", "/feedback", _shifted(page, 13 + k))[0]
        for k, page in enumerate(many)
    ]  # fmt: skip
    assert statuses == [201, 201, 429], statuses  # IN_ALL a minute in all
    last = client.request("POST", "/feedback", _shifted(honest, 17))
    assert last[0] == 429 and "a minute from all pages together" in last[1]
    assert len(_kept(folder)) == IN_ALL


def test_a_full_review_queue_is_507_and_keeps_nothing_more(tmp_path, running, feedback) -> None:
    folder = tmp_path / "store"
    store = FeedbackStore(folder, max_pending=1)
    _, client = running(feedback=feedback.PageFeedback(store, {"fp32": FP32}))
    page = client.session()
    assert client.request("POST", "/feedback", _correction(page))[0] == 201
    status, text = client.request("POST", "/feedback", _shifted(page, 3))
    assert status == 507 and "wait for review already" in text and text.count("\n") == 1
    assert len(_kept(folder)) == 1


class _Shipper:
    """A team store that takes copies, or refuses them while ``down``."""

    def __init__(self) -> None:
        self.down, self.shipped = False, []

    def ship(self, path) -> None:
        if self.down:
            raise ConnectionError("the team server is down\nsecond line")
        self.shipped.append(path.name)


def test_each_new_correction_is_copied_to_the_team_and_a_failing_copy_warns_once(
    tmp_path, running, feedback
) -> None:
    shipper, said = _Shipper(), []
    copies = feedback.TeamCopies(shipper, warn=said.append)
    store = FeedbackStore(tmp_path / "store")
    page_feedback = feedback.PageFeedback(store, {"fp32": FP32}, copies=copies)
    _, client = running(feedback=page_feedback)
    page = client.session()
    for k in (0, 0, 1):  # the same image twice: kept once, copied once
        client.request("POST", "/feedback", _shifted(page, k))
    copies._copies.submit(setattr, shipper, "down", True)  # in line with the copies
    for k in (2, 3):
        assert client.request("POST", "/feedback", _shifted(page, k))[0] == 201
    copies._copies.submit(setattr, shipper, "down", False)
    assert client.request("POST", "/feedback", _shifted(page, 4))[0] == 201
    page_feedback.close()  # waits for the copies on their way
    assert len(shipper.shipped) == 3 and len(set(shipper.shipped)) == 3
    assert store.pending_count() == 5, "the local store keeps every one all the same"
    assert len(said) == 2, said
    assert (
        said[0].startswith("cannot copy ")
        and "(ConnectionError: the team server is down); " in said[0]
    )
    assert said[1] == "copying corrections to the team's store again"
