"""The parts of member management and backups that need no server: names, and the paths a
backup may write."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.cli import CommandError
from team.backup import _object_path
from team.members import _checked_name


@pytest.mark.parametrize("name", ["alice", "bob.smith", "ci-bot_2", "a" * 64])
def test_a_member_name_of_letters_digits_dots_dashes_is_taken(name):
    assert _checked_name(name) == name


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("../x", "is not valid"),
        ("", "is not valid"),
        ("-dash", "is not valid"),
        ("a b", "is not valid"),
        ("a" * 65, "is not valid"),
        ("admin", "administrator, not a member"),
    ],
)
def test_a_member_name_that_is_not_one_is_refused_in_one_line(name, words):
    with pytest.raises(CommandError, match=words):
        _checked_name(name)


def test_every_object_key_gets_a_file_of_its_own_inside_the_backup(tmp_path: Path):
    keys = ["files/md5/ab/cdef", "a", "a/b", "a//b", "../../etc/passwd", "/abs", "x/"]
    paths = [_object_path(tmp_path, "dvc-remote", key) for key in keys]
    assert len(set(paths)) == len(keys), "two keys would share a file"
    assert all(path.parent == tmp_path / "buckets" / "dvc-remote" for path in paths)
