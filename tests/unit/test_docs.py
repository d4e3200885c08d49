"""README.md and docs/: every relative link leads to a file, every ``make X`` is a target.

The README is the front page and links onward, so a page that moves, a link with a typo or a
target renamed in the Makefile would send a reader nowhere; the README also stays short.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from kernel.paths import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
PAGES = [README, *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
ALL_PAGES = [README, *sorted((PROJECT_ROOT / "docs").rglob("*.md"))]
MAX_README_LINES = 250

# [text](target) and ![alt](target), with an optional "title" after the target
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = ("http://", "https://", "mailto:")
FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
TARGET_NAME = r"[A-Za-z0-9_.-]+"
MAKE = re.compile(rf"\bmake +({TARGET_NAME})")
# "make" is an English verb too: a tool's printed output may say "make it ..."
NOT_TARGETS = frozenset({"it", "a", "an", "the", "sure"})
MAKEFILE_RULE = re.compile(rf"^({TARGET_NAME}):(?!=)", re.M)


def page_id(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT))


def without_code(text: str) -> str:
    """The Markdown with fenced blocks, indented blocks and code spans blanked out."""
    text = FENCE.sub("", text)
    text = "\n".join("" if line.startswith(("    ", "\t")) else line for line in text.split("\n"))
    return CODE_SPAN.sub("", text)


def relative_links(text: str) -> list[str]:
    """Link targets that name a file or folder of the repository (prose only, not code)."""
    targets = []
    for target in LINK.findall(without_code(text)):
        if target.startswith(EXTERNAL) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def make_targets(text: str) -> set[str]:
    """Every target named as ``make X``: in prose, code blocks and code spans.

    A code span that is a make command may name several targets
    (``make champion triton-repo TRITON_MODEL=...``): each word before the first
    variable assignment counts.
    """
    named = {name for name in MAKE.findall(text) if name not in NOT_TARGETS}
    for _, span in CODE_SPAN.findall(FENCE.sub("", text)):
        words = span.split()
        if words[:1] != ["make"]:
            continue
        for word in words[1:]:
            if not re.fullmatch(TARGET_NAME, word):
                break
            named.add(word)
    return named


def makefile_targets() -> set[str]:
    """The Makefile's explicit targets: no pattern rules, no special targets like .PHONY."""
    text = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    return {
        name for name in MAKEFILE_RULE.findall(text) if "%" not in name and not name.startswith(".")
    }


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_leads_to_a_file_or_folder(page: Path) -> None:
    missing = [
        target
        for target in relative_links(page.read_text(encoding="utf-8"))
        if not (page.parent / target).exists()
    ]
    assert not missing, f"{page_id(page)}: links to nothing: {', '.join(missing)}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_make_target_named_is_a_target_of_the_makefile(page: Path) -> None:
    unknown = sorted(make_targets(page.read_text(encoding="utf-8")) - makefile_targets())
    assert not unknown, (
        f"{page_id(page)}: names make target(s) the Makefile does not have: "
        + ", ".join(f"make {name}" for name in unknown)
    )


def test_the_readme_is_a_front_page_of_at_most_250_lines() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_README_LINES, (
        f"{page_id(README)}: {lines} lines, more than {MAX_README_LINES}: move a section "
        "to docs/ and link it"
    )


# a console script of .venv, on PATH only once the venv is activated
VENV_COMMANDS = ("digits-predict",)


def bare_venv_commands(text: str) -> list[str]:
    """Command lines of code blocks (fenced or indented) that start with a console script of
    the venv by its bare name: ``command not found`` in a shell that did not activate it."""
    lines = [line for block in FENCE.finditer(text) for line in block.group(0).splitlines()]
    lines += [line for line in text.splitlines() if line.startswith(("    ", "\t"))]
    return [line.strip() for line in lines if line.strip().split(" ", 1)[0] in VENV_COMMANDS]


@pytest.mark.parametrize("page", ALL_PAGES, ids=page_id)
def test_venv_commands_are_shown_as_a_fresh_shell_runs_them(page: Path) -> None:
    bare = bare_venv_commands(page.read_text(encoding="utf-8"))
    assert not bare, (
        f"{page_id(page)}: shows {bare[0]!r}, which a shell without the venv activated does "
        "not find: write .venv/bin/" + bare[0]
    )


def test_the_checks_find_what_they_look_for() -> None:
    text = (
        "See [a](docs/a.md#part), [b](https://example.org), [c](#here), ![d](img.png).\n"
        "Run `make champion triton-repo TRITON_MODEL=x` or make repro; make it so.\n"
        "```\n[not a link](nowhere.md)\n```\n"
    )
    assert relative_links(text) == ["docs/a.md", "img.png"]
    assert make_targets(text) == {"champion", "triton-repo", "repro"}
    commands = (
        "Run `digits-predict` or:\n\n    digits-predict x.png\n    .venv/bin/digits-predict y.png\n"
        "```\ndigits-predict --json z.png\n```\n"
    )
    assert bare_venv_commands(commands) == ["digits-predict --json z.png", "digits-predict x.png"]
    assert {"repro", "test", "help"} <= makefile_targets()


def exp_run_overrides(text: str) -> list[dict[str, object]]:
    """The ``-S key=value`` overrides of each ``dvc exp run`` command in ``text``, parsed."""
    found = []
    for command in re.findall(r"dvc exp run[^`\n]*", text):
        words = shlex.split(command)
        pairs = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "-S"]
        found.append(
            {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in pairs if "=" in p)}
        )
    return found


def test_each_preset_has_its_exact_command_in_comparing_md() -> None:
    presets = yaml.safe_load((PROJECT_ROOT / "bench/presets.yaml").read_text(encoding="utf-8"))
    commands = exp_run_overrides((PROJECT_ROOT / "docs/comparing.md").read_text(encoding="utf-8"))
    missing = [
        name for name, overrides in presets.items() if overrides and overrides not in commands
    ]
    assert not missing, f"docs/comparing.md has no `dvc exp run -S …` line for {missing}"
    assert exp_run_overrides("`dvc exp run -n x -S 'train.hidden_units=[8,8]' -S a.b=0.5`") == [
        {"train.hidden_units": [8, 8], "a.b": 0.5}
    ]
