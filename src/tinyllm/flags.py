"""Command-line flags made from the config dataclasses, and `--config` TOML files.

Each field of `GPTConfig`, `TrainConfig`, `SpeedSettings` and `SamplingParams` is a `setting` (see `settings.py`);
`add_config_flags` turns each into a flag (`n_layer` -> `--n-layer`) whose value is parsed from the
text and then checked by the field's own check, so the command line refuses a bad value before
anything runs, in the dataclass's words. A TOML file's keys are the same field names (`resolve.py`
reads them and merges everything).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from .errors import ConfigError
from .settings import duration, positive_int


def _text_parser(field: dataclasses.Field) -> Callable[[str], Any]:
    """How to read a field's value typed as text: its own `parse`, else by its annotated type."""
    if field.metadata.get("parse"):
        return field.metadata["parse"]
    kind = str(field.type)
    if "int" in kind:
        return lambda text: _convert(int, text, "an integer")
    if "float" in kind:
        return lambda text: _convert(float, text, "a number")
    return str


def _convert(kind: type, text: str, what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"expected {what}, got {text!r}") from None


def flag_type(field: dataclasses.Field) -> Callable[[str], Any]:
    """argparse's `type=` for a field: parse the text, then run the field's own check, so that a bad
    value is refused with the dataclass's words before anything runs."""
    parse, check = _text_parser(field), field.metadata.get("check")

    def convert(text: str) -> Any:
        try:
            value = parse(text)
            if check is not None:
                check(field.name, value)
        except (ValueError, ConfigError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    return convert


def flag_name(field: dataclasses.Field) -> str:
    return "--" + field.name.replace("_", "-")


def add_config_flags(group, config_class: type, skip: tuple[str, ...] = (), **argument_options: Any) -> None:
    """One flag per field of `config_class` (but those in `skip` or marked `flag=False`): --n-layer for n_layer."""
    for field in dataclasses.fields(config_class):
        meta = field.metadata
        if not meta.get("flag", True) or field.name in skip:
            continue
        if str(field.type) == "bool":  # an on/off switch: --compile/--no-compile, --no-bias
            if field.default is True:
                group.add_argument(
                    f"--no-{field.name.replace('_', '-')}", action="store_false", dest=field.name, help=meta["help"]
                )
            else:
                group.add_argument(flag_name(field), action=argparse.BooleanOptionalAction, help=meta["help"])
        elif meta.get("choices"):
            group.add_argument(flag_name(field), choices=meta["choices"], help=meta["help"], **argument_options)
        else:
            group.add_argument(flag_name(field), type=flag_type(field), help=meta["help"], **argument_options)


class CheckpointEvery(argparse.Action):
    """--checkpoint-interval: '200' sets checkpoint_interval (every 200 steps); '90s', '5m' set
    checkpoint_seconds (every so many seconds)."""

    def __call__(self, parser, namespace, text, option_string=None) -> None:
        try:
            if text.strip().isdigit():
                positive_int("--checkpoint-interval", int(text))
                namespace.checkpoint_interval = int(text)
            else:
                namespace.checkpoint_seconds = duration(text)
        except (ValueError, ConfigError) as e:
            parser.error(f"argument --checkpoint-interval: {e}")


def count(text: str, minimum: int) -> int:
    """An integer typed on the command line, at least `minimum`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
    return value


def checkpoint_name(text: str) -> str:
    """--checkpoint: last, best, or step:N (a snapshot)."""
    if text in ("last", "best") or (text.startswith("step:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected last, best or step:N (a snapshot's step, like step:500), got {text!r}")


def length_list(text: str) -> list[int]:
    """--lengths: '1-30' or '1-10,15,20' -> the operand lengths, each from 1 to 100."""
    lengths: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            lengths += range(int(low), int(high or low) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected lengths like 1-30 or 5,10,20, got {text!r}") from None
    if not lengths or min(lengths) < 1 or max(lengths) > 100:
        raise argparse.ArgumentTypeError(f"lengths must lie between 1 and 100, got {text!r}")
    return sorted(set(lengths))


def add_task_flags(parser: argparse.ArgumentParser, tasks: dict[str, Any]) -> None:
    """Each option's flag of the `tasks` (name -> class), once, even where several tasks share it (--no-lowercase)."""
    helps: dict[str, dict[str, list[str]]] = {}  # flag -> help text -> the tasks that say it
    for task in tasks.values():
        for option in task.options:
            helps.setdefault(option.flag, {}).setdefault(option.help, []).append(task.name)
    group = parser.add_argument_group("task options")
    added = set()
    for task in tasks.values():
        for option in task.options:
            if option.flag in added:
                continue
            added.add(option.flag)
            help_text = "; ".join(f"{', '.join(names)}: {text}" for text, names in helps[option.flag].items())
            if option.store is not None:
                group.add_argument(
                    option.flag, dest=option.dest, action="store_const", const=option.store, help=help_text
                )
            else:
                group.add_argument(
                    option.flag, dest=option.dest, type=option.type, choices=option.choices, help=help_text
                )
