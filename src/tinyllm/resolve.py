"""Settling a training's settings: one resolver for the task's defaults, a TOML file and the flags.

Every setting has one name (a field of `GPTConfig`, `TrainConfig` or `speed.SpeedSettings`, or an
option of the task), and the same name is a `--flag`, a key of a `--config` TOML file and a keyword
of `tinyllm.train()`. `resolve` merges them, each overriding the one before:

    a new run:      the task's defaults  <  the TOML file  <  the flags (or keywords)
    a resumed run:  the run's own saved settings  <  the TOML file  <  the flags

and sorts them into the task, the model's config, the training config and the speed settings. A
resumed run may change how it trains, never the model's shape. Nothing here runs anything: the
result is checked by the dataclasses themselves, so a mistake is refused before training starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .config import TrainConfig
from .errors import UsageError
from .model import GPTConfig
from .rundir import RunDirectory
from .speed import SpeedSettings
from .tasks import TASKS, Task, get_task
from .tokenizer import tokenizer_from_dict

MODEL_FIELDS = {f.name: f for f in dataclasses.fields(GPTConfig) if f.name != "vocab_size"}  # vocab: the tokenizer's
TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
SPEED_FIELDS = {f.name: f for f in dataclasses.fields(SpeedSettings)}


@dataclass
class Settings:
    """Everything a training needs to know before it starts."""

    task: Task
    model: dict[str, Any]  # GPTConfig fields; the vocabulary's size comes from the tokenizer
    train: TrainConfig
    speed: SpeedSettings
    tokenizer: Any = None  # the run's own tokenizer, when resuming


def resolve(
    task_name: str,
    given: dict[str, Any] | None = None,
    *,
    config_file: str | None = None,
    resume_from: RunDirectory | None = None,
) -> Settings:
    """The settings of a training of `task_name`: `given` (flags or keywords) over the `config_file`
    over the task's defaults -- or, with `resume_from`, over that run's saved settings."""
    task_class = get_task(task_name)
    values = read_config_file(config_file, task_class) if config_file else {}
    values.update(given or {})
    options, model, train, speed = _sort(values, task_class)
    if resume_from is None:
        shared = {key: model[key] for key in task_class.reads_model_fields if key in model}
        task = task_class(**options, **shared)
        train_config = TrainConfig.from_dict({**task.train_defaults, **train})
        speed_settings = SpeedSettings.from_dict(speed)
        speed_settings.check(train_config.dtype, train_config.compile)  # before any data is read
        return Settings(task, {**task.model_defaults, **model}, train_config, speed_settings)
    saved = resume_from.read_config()
    if saved["task"] != task_name:
        raise UsageError(f"{resume_from.path} is a run of task {saved['task']!r}, not {task_name!r}")
    for key, value in model.items():
        if saved["model"].get(key) != value:
            raise UsageError(f"cannot change {key} when resuming (the run has {saved['model'].get(key)})")
    saved_train = dict(saved["train"])
    # runs saved before the speed settings had a section of their own kept them with the training's
    saved_speed = saved.get("speed") or {key: saved_train.pop(key) for key in SPEED_FIELDS if key in saved_train}
    return Settings(
        task_class(**saved["task_options"]),
        saved["model"],
        TrainConfig.from_dict({**saved_train, **train}),
        SpeedSettings.from_dict({**saved_speed, **speed}),
        tokenizer_from_dict(resume_from.read_tokenizer()),
    )


def _sort(values: dict[str, Any], task_class: type[Task]) -> tuple[dict, dict, dict, dict]:
    """Split settings by owner: (the task's options, the model's, the training's, the speed package's)."""
    own = {option.dest for option in task_class.options}
    groups: tuple[dict, dict, dict, dict] = ({}, {}, {}, {})
    for key, value in values.items():
        if key in own:
            groups[0][key] = value
        elif key in MODEL_FIELDS:
            groups[1][key] = value
        elif key in TRAIN_FIELDS:
            groups[2][key] = value
        elif key in SPEED_FIELDS:
            groups[3][key] = value
        else:
            owners = [t.name for t in TASKS.values() if any(o.dest == key for o in t.options)]
            if owners:
                flag = next(o.flag for t in TASKS.values() for o in t.options if o.dest == key)
                raise UsageError(f"{flag} is an option of the {' and '.join(owners)} task, not of {task_class.name}")
            raise UsageError(f"unknown setting {key!r}")
    return groups


# ---- --config FILE ----


def read_toml(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path} is not valid TOML: {e}") from None
    return {key.replace("-", "_"): value for key, value in values.items()}


def read_config_file(path: str, task_class: type[Task]) -> dict[str, Any]:
    """A --config TOML file's settings for `task_class`; a string where a field parses text
    (max_time = "2m") is parsed."""
    allowed = {**MODEL_FIELDS, **TRAIN_FIELDS, **SPEED_FIELDS, **{o.dest: None for o in task_class.options}}
    values = read_toml(path)
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise UsageError(f"{path}: unknown keys: {', '.join(unknown)}")
    for key, value in values.items():
        field = allowed[key]
        if field is not None and isinstance(value, str) and field.metadata.get("parse"):
            try:
                values[key] = field.metadata["parse"](value)
            except ValueError as e:
                raise UsageError(f"{path}: {key}: {e}") from None
    return values
