"""The collection of tasks, looked up by name (`tinyllm train NAME`)."""

from __future__ import annotations

from ..errors import UsageError
from .base import Task, TaskModel, TaskOption
from .shakespeare import Shakespeare

TASKS: dict[str, type[Task]] = {task.name: task for task in (Shakespeare,)}


def get_task(name: str) -> type[Task]:
    """The task class called `name`, or a clear error listing the tasks there are."""
    try:
        return TASKS[name]
    except KeyError:
        raise UsageError(f"unknown task {name!r}; the tasks are: {', '.join(TASKS)}") from None


__all__ = ["TASKS", "Task", "TaskModel", "TaskOption", "get_task"]
