"""Atomic writes: the target holds the old file or the whole new one, and no temp file is left."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from kernel.atomic import (
    StagedFiles,
    atomic_path,
    staged_folder,
    write_bytes,
    write_json,
    write_npz,
    write_text,
)


class Boom(Exception):
    pass


def test_atomic_path_success_replaces_target(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing visible before the rename
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o644
    assert sorted(tmp_path.iterdir()) == [target]


def test_atomic_path_makes_the_parent_folder(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.bin"
    write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


@pytest.mark.parametrize("existing", [True, False], ids=["old-file-kept", "no-file-created"])
def test_atomic_path_failure_leaves_target_untouched(tmp_path: Path, existing: bool) -> None:
    target = tmp_path / "out.txt"
    if existing:
        target.write_text("old")
    with pytest.raises(Boom), atomic_path(target, suffix=".txt") as tmp:
        tmp.write_text("half of the new conte")
        raise Boom
    if existing:
        assert target.read_text() == "old"
        assert sorted(tmp_path.iterdir()) == [target]
    else:
        assert list(tmp_path.iterdir()) == []


def test_write_npz_failure_midway_leaves_no_trace(tmp_path: Path) -> None:
    target = tmp_path / "data.npz"
    target.write_bytes(b"previous")
    arrays = {"x": np.arange(3), "bad": np.array([{"pickled": "object"}], dtype=object)}
    with pytest.raises(ValueError, match="pickle"):
        write_npz(target, arrays)
    assert target.read_bytes() == b"previous"
    assert sorted(tmp_path.iterdir()) == [target]


def test_write_npz_round_trips(tmp_path: Path) -> None:
    arrays = {
        "x": np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28),
        "y": np.array([3, 9], dtype=np.uint8),
        "f": np.asfortranarray(np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)),
        "empty": np.zeros((0, 28, 28), dtype=np.uint8),
    }
    write_npz(tmp_path / "a.npz", arrays)
    with np.load(tmp_path / "a.npz", allow_pickle=False) as loaded:
        assert sorted(loaded.files) == sorted(arrays)
        for name, array in arrays.items():
            assert loaded[name].dtype == array.dtype
            np.testing.assert_array_equal(loaded[name], array)


def test_write_npz_is_byte_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = {
        "x": np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "y": np.arange(5, dtype=np.uint8),
    }
    write_npz(tmp_path / "a.npz", arrays)
    # a later clock must not change the bytes (np.savez_compressed would stamp the time)
    later = time.time() + 3 * 86400
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(time, "localtime", lambda *args: time.gmtime(later))
    write_npz(tmp_path / "b.npz", {name: array.copy() for name, array in arrays.items()})
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    write_npz(tmp_path / "c.npz", {**arrays, "y": arrays["y"][::-1]})
    assert (tmp_path / "c.npz").read_bytes() != (tmp_path / "a.npz").read_bytes()


def test_write_json_and_text(tmp_path: Path) -> None:
    write_json(tmp_path / "r.json", {"b": 1, "a": [1.5, "x"]})
    text = (tmp_path / "r.json").read_text()
    assert text.endswith("}\n") and text.index('"a"') < text.index('"b"')
    assert json.loads(text) == {"a": [1.5, "x"], "b": 1}
    write_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_bytes() == "héllo\n".encode()


# --- several files replaced together -------------------------------------------------------------


def _contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_staged_files_replace_all_on_commit(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old a")
    with StagedFiles() as staged:
        staged.write_text(tmp_path / "a.txt", "new a")
        staged.write_json(tmp_path / "sub" / "b.json", {"b": 1})
        assert (tmp_path / "a.txt").read_text() == "old a", "nothing changes before commit"
        assert not (tmp_path / "sub" / "b.json").exists()
        staged.commit()
    assert (tmp_path / "a.txt").read_text() == "new a"
    assert json.loads((tmp_path / "sub" / "b.json").read_text()) == {"b": 1}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "b.json", "sub"]


@pytest.mark.parametrize("when", ["before-commit", "after-commit"])
def test_staged_files_leave_every_target_as_it_was_when_the_body_raises(
    tmp_path: Path, when: str
) -> None:
    (tmp_path / "a.txt").write_text("old a")
    with pytest.raises(RuntimeError), StagedFiles() as staged:
        staged.write_text(tmp_path / "a.txt", "new a")
        staged.write_text(tmp_path / "b.txt", "new b")
        if when == "after-commit":
            staged.commit()
            assert (tmp_path / "b.txt").read_text() == "new b"
        raise RuntimeError("a later step failed")
    assert _contents(tmp_path) == {"a.txt": b"old a"}, "old file back, new file gone, no temps"


def test_staged_files_undo_a_commit_that_fails_part_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_text(f"old {name}")
    real_replace, swaps = os.replace, []

    def replace(source: Path, target: Path) -> None:
        if str(source).endswith(".staged"):
            swaps.append(target)
            if len(swaps) == 3:
                raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space"), StagedFiles() as staged:
        for name in ("a.txt", "b.txt", "c.txt"):
            staged.write_text(tmp_path / name, f"new {name}")
        staged.commit()
    assert _contents(tmp_path) == {
        name: f"old {name}".encode() for name in ("a.txt", "b.txt", "c.txt")
    }


def test_staged_files_keep_the_last_content_staged_for_a_target(tmp_path: Path) -> None:
    with StagedFiles() as staged:
        staged.write_text(tmp_path / "a.txt", "first")
        staged.write_text(tmp_path / "a.txt", "second")
        staged.commit()
    assert _contents(tmp_path) == {"a.txt": b"second"}


def test_npz_members_carry_plain_zip_headers(tmp_path: Path) -> None:
    """Each member is written with its size known, so its local header is the plain one
    (version 2.0, real sizes): a streamed zip64 header differs between Python 3.11 patch
    releases, and the same arrays would hash differently on another machine."""
    import struct
    import zipfile

    path = tmp_path / "arrays.npz"
    write_npz(path, {"x": np.arange(5000, dtype=np.uint8).reshape(50, 100), "y": np.zeros(3)})
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            header = data[info.header_offset : info.header_offset + 30]
            version, compressed, size = (
                struct.unpack("<H", header[4:6])[0],
                *struct.unpack("<II", header[18:26]),
            )
            assert (version, compressed, size) == (20, info.compress_size, info.file_size)


def test_staged_folder_replaces_the_folder_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "site"
    with staged_folder(target) as staging:
        (staging / "page").write_text("first")
    assert (target / "page").read_text() == "first"
    assert target.stat().st_mode & 0o777 == 0o755

    with pytest.raises(RuntimeError), staged_folder(target) as staging:
        (staging / "page").write_text("half")
        raise RuntimeError("drawing failed")
    assert (target / "page").read_text() == "first"

    with staged_folder(target) as staging:
        (staging / "other").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["other"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"], "no staging or backup left"


def test_staged_folder_puts_back_what_a_swap_cut_short_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, backup = tmp_path / "site", tmp_path / ".site.backup"
    backup.mkdir()
    (backup / "page").write_text("the last good one")  # the old folder set aside, no new one
    real_replace = os.replace

    def failing_replace(source: str, destination: str) -> None:
        if str(source).endswith(".staged"):
            raise OSError("the disk said no")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="the disk said no"), staged_folder(target) as staged:
        (staged / "page").write_text("new")
    assert (target / "page").read_text() == "the last good one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
