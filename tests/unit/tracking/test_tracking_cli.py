"""``python -m tracking``'s command line: the UI's port as an option, usage errors in one line."""

from __future__ import annotations

import pytest

from kernel.cli import run_command
from tracking.__main__ import argument_parser, main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "argument --port: '70000' is no port: expected a number from 1 to"),
        (["promote"], "the following arguments are required: VERSION, --reason; python -m "
         "tracking promote --help lists what it takes"),
        (["promote", "3"], "the following arguments are required: --reason"),
        (["bogus"], "argument COMMAND: invalid choice: 'bogus' (choose from 'ui', 'download', "
         "'promote', 'rollback', 'unpin', 'history')"),
        (["history", "--last", "x"], "argument --last: invalid int value: 'x'"),
    ],
)  # fmt: skip
def test_a_usage_error_is_one_line_and_exit_2(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        run_command("tracking", main, argv)
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"tracking: error: {message}"), line


def test_the_ui_is_the_default_command_and_takes_its_port() -> None:
    parsed = argument_parser().parse_args(["ui", "--port", "5100"])
    assert (parsed.command, parsed.port) == ("ui", 5100)
    assert argument_parser().parse_args(["promote", "v3", "--reason", "x"]).version == "3"
