"""The collection of tasks, looked up by name (`tinyllm train NAME`)."""

from __future__ import annotations

from ..errors import UsageError
from .addition import Addition
from .base import IGNORE, Task, TaskModel, TaskOption, score_last
from .modadd import ModularAddition
from .shakespeare import Shakespeare
from .sort import Sort
from .text import Text

TASKS: dict[str, type[Task]] = {task.name: task for task in (Shakespeare, Text, Addition, Sort, ModularAddition)}


def register(task: type[Task]) -> type[Task]:
    """Add a task of your own to the collection (usable as a class decorator)."""
    if not getattr(task, "name", None):
        raise ValueError("a task needs a name")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> type[Task]:
    """The task class called `name`, or a clear error listing the tasks there are."""
    try:
        return TASKS[name]
    except KeyError:
        raise UsageError(f"unknown task {name!r}; the tasks are: {', '.join(TASKS)}") from None


__all__ = ["IGNORE", "TASKS", "Task", "TaskModel", "TaskOption", "get_task", "register", "score_last"]
