"""The docs stay true: every `tinyllm ...` command in README.md and docs/ is checked against the real
command-line parser (the subcommand exists, every flag exists for it -- a task's own flags for the
task named -- and every value parses), and every image and local link they name exists."""

import argparse
import re
import shlex
from pathlib import Path

import pytest

from tinyllm.cli import build_parser
from tinyllm.flags import CheckpointEvery
from tinyllm.tasks import TASKS

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```.*?$(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`(tinyllm [^`]+)`")
START = re.compile(r"^(?:\$ )?(?:python -m |torchrun .*?-m )?(tinyllm .*)$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def commands(page: Path) -> list[str]:
    """Each `tinyllm ...` command of a page: lines of its code blocks that start with one (joined
    across backslash continuations, split at && and ;), and inline code spans that are one."""
    text = page.read_text(encoding="utf-8")
    found = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;", line):
                match = START.match(part.strip())
                if match:
                    found.append(match.group(1))
    found += INLINE.findall(FENCE.sub("", text))
    return found


def placeholder(token: str) -> bool:
    """A word that stands for a value: RUN, TASK, N, PATH, a run folder's name, `...`."""
    return "..." in token or token.startswith(("[", "<")) or bool(re.fullmatch(r"[A-Z][A-Z0-9_\-]*", token))


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def check(command: str) -> list[str]:
    """What is wrong with one command ([] if nothing)."""
    tokens = shlex.split(command, comments=True)[1:]
    if not tokens or tokens[0].startswith("-") or placeholder(tokens[0]):
        return []  # `tinyllm --version`, `tinyllm COMMAND --help`
    commands_ = subparsers(build_parser())
    if tokens[0] not in commands_:
        return [f"no command {tokens[0]!r}"]
    sub = commands_[tokens[0]]
    options = {flag: action for action in sub._actions for flag in action.option_strings}
    positionals = [t for t in tokens[1:] if not t.startswith("-")]
    task = positionals[0] if tokens[0] == "train" and positionals else None
    if task is not None and not placeholder(task) and task not in TASKS:
        return [f"no task {task!r}"]
    problems, i = [], 1
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("--"):
            continue
        flag, _, value = token.partition("=")
        action = options.get(flag)
        if action is None:
            problems.append(f"{tokens[0]} has no flag {flag}")
            continue
        owners = [t for t in TASKS.values() if any(o.flag == flag for o in t.options)]
        if task in TASKS and owners and TASKS[task] not in owners:
            problems.append(f"{flag} is not an option of the {task} task")
        if action.nargs == 0:
            continue
        if not value:
            if i >= len(tokens):
                problems.append(f"{flag} needs a value")
                continue
            value, i = tokens[i], i + 1
        if not placeholder(value):
            problems += check_value(sub, action, flag, value)
    return problems


def check_value(parser, action: argparse.Action, flag: str, value: str) -> list[str]:
    try:
        if isinstance(action, CheckpointEvery):
            action(parser, argparse.Namespace(), value)
        elif action.type is not None:
            value = action.type(value)
    except (argparse.ArgumentTypeError, ValueError, SystemExit) as e:
        return [f"{flag} {value!r}: {e}"]
    if action.choices is not None and value not in action.choices:
        return [f"{flag} {value!r} is not one of {list(action.choices)}"]
    return []


ALL = [(page, command) for page in PAGES for command in commands(page)]


def test_the_docs_have_commands_to_check():
    assert len(ALL) > 60 and {p.name for p, _ in ALL} >= {"README.md", "reference.md", "01-first-model.md"}


@pytest.mark.parametrize("page, command", ALL, ids=[f"{p.name}: {c[:50]}" for p, c in ALL])
def test_every_command_parses(page, command):
    assert not check(command), f"{page.relative_to(REPO)}: {command}"


@pytest.mark.parametrize(
    "command, problem",
    [
        ("tinyllm trian shakespeare", "no command"),
        ("tinyllm train shakespear", "no task"),
        ("tinyllm train shakespeare --n-layers 4", "no flag --n-layers"),
        ("tinyllm train shakespeare --digits 3", "not an option of the shakespeare task"),
        ("tinyllm train shakespeare --n-layer zero", "--n-layer"),
        ("tinyllm train shakespeare --optimizer sgd", "not one of"),
        ("tinyllm train shakespeare --checkpoint-interval often", "--checkpoint-interval"),
        ("tinyllm plot a b --x minutes", "not one of"),
        ("tinyllm sample RUN --prompt hi --top-p 2", "--top-p"),
    ],
)
def test_the_checker_catches_what_it_should(command, problem):
    assert any(problem in p for p in check(command)), check(command)


def test_every_image_and_local_link_exists():
    missing = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:", "#")):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                missing.append(f"{page.relative_to(REPO)} -> {target}")
    assert not missing, missing


def test_every_lesson_has_the_five_parts():
    lessons = sorted((REPO / "docs" / "lessons").glob("[0-9][0-9]-*.md"))
    assert len(lessons) >= 12
    for lesson in lessons:
        text = lesson.read_text(encoding="utf-8")
        for heading in ("## The question", "## The commands", "## The picture", "## What to notice", "## Try"):
            assert heading in text, f"{lesson.name}: no {heading}"
        picture = text.split("## The picture")[1].split("## What to notice")[0]
        assert "![" in picture or "```" in picture, f"{lesson.name}: the picture is an image or a command's output"
        assert "tinyllm " in text and "<details>" in text, lesson.name
