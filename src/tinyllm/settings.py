"""Settings described once: each config field says its default, what it means and what it accepts.

A field of `GPTConfig`, `TrainConfig` or `SamplingParams` is declared with `setting(...)`:

    n_layer: int = setting(3, "transformer blocks", positive_int)

From that one line come the dataclass default, the validation its `__post_init__` runs (through
`check_fields`), the `--n-layer` flag of `tinyllm train` with its help text and the `n_layer` key of
a `--config` TOML file (`cli.py` reads the fields). So a new setting is one line, and the command
line can never accept a value the config would refuse, or check it differently.

A check is a function `check(name, value)` that raises `ConfigError` with a sentence that names the
setting. The ones below cover every field tinyllm has.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

from .errors import ConfigError

Check = Callable[[str, Any], None]


def setting(
    default: Any,
    help: str,
    check: Check | None = None,
    *,
    parse: Callable[[str], Any] | None = None,
    choices: tuple[str, ...] | None = None,
    flag: bool = True,
) -> Any:
    """A dataclass field with its help text and check (and, for the command line, how to parse a value
    typed as text, its choices, or `flag=False` to leave it off the command line)."""
    if choices is not None and check is None:
        check = one_of(*choices)
    metadata = {"help": help, "check": check, "parse": parse, "choices": choices, "flag": flag}
    return dataclasses.field(default=default, metadata=metadata)


def check_fields(config: Any) -> None:
    """Run every field's check on a dataclass instance (call it from `__post_init__`)."""
    for field in dataclasses.fields(config):
        check = field.metadata.get("check")
        if check is not None:
            check(field.name, getattr(config, field.name))


def from_dict(cls: type, values: dict[str, Any], what: str) -> Any:
    """`cls(**values)`, refusing keys the dataclass does not have (e.g. a typo in config.json)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {what} config keys: {', '.join(unknown)}")
    return cls(**values)


# ---- checks ----


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not to us


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(name: str, value: Any) -> None:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def non_negative_int(name: str, value: Any) -> None:
    if not _is_int(value) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")


def number(name: str, value: Any) -> None:
    if not _is_number(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")


def positive_number(name: str, value: Any) -> None:
    if not _is_number(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")


def non_negative_number(name: str, value: Any) -> None:
    if not _is_number(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")


def fraction(name: str, value: Any) -> None:
    """A number in [0, 1): dropout, Adam's betas."""
    if not _is_number(value) or not 0 <= value < 1:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")


def probability(name: str, value: Any) -> None:
    """A number in (0, 1]: top-p."""
    if not _is_number(value) or not 0 < value <= 1:
        raise ConfigError(f"{name} must be in (0, 1], got {value!r}")


def unit_interval(name: str, value: Any) -> None:
    """A number in [0, 1]: min-p."""
    if not _is_number(value) or not 0 <= value <= 1:
        raise ConfigError(f"{name} must be in [0, 1], got {value!r}")


def int_range(low: int, high: int) -> Check:
    def check(name: str, value: Any) -> None:
        if not _is_int(value) or not low <= value <= high:
            raise ConfigError(f"{name} must be an integer from {low} to {high}, got {value!r}")

    return check


def boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")


def one_of(*choices: str) -> Check:
    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise ConfigError(f"{name} must be {', '.join(choices[:-1])} or {choices[-1]}, got {value!r}")

    return check


def optional(check: Check) -> Check:
    """`check`, or None (meaning "not set")."""

    def check_or_none(name: str, value: Any) -> None:
        if value is not None:
            check(name, value)

    return check_or_none


# ---- parsing text typed on the command line ----

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def duration(text: str | float) -> float:
    """Seconds from '300', '90s', '5m', '1h', '1m30s' (or a number of seconds)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    match = _DURATION.match(str(text).strip())
    if not match or not any(match.groups()):
        raise ValueError(f"expected a duration such as 90s, 5m or 1h30m, got {text!r}")
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    seconds = 3600 * h + 60 * m + s
    if seconds <= 0:
        raise ValueError(f"expected a duration > 0, got {text!r}")
    return seconds
