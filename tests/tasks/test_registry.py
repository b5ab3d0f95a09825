"""The collection of tasks (tasks/__init__.py): every task listed, with a description."""

from tinyllm.tasks import TASKS


def test_all_tasks_are_listed_with_a_description():
    assert set(TASKS) >= {"shakespeare", "addition", "sort", "modadd"}
    assert all(task.description for task in TASKS.values())
