"""The examples stay working: docs/reference.md's "write your own task" example trains and answers."""

import importlib.util
from pathlib import Path

import torch

import tinyllm
from tinyllm.runs import train
from tinyllm.tasks import TASKS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_reverse_task_example(tmp_path):
    spec = importlib.util.spec_from_file_location("reverse_task", EXAMPLES / "reverse_task.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # registers the task, does not train (guarded by __main__)
        assert "reverse" in TASKS
        torch.manual_seed(0)
        train(
            "reverse",
            out_dir=tmp_path / "reverse",
            train_overrides={"max_iters": 300},
            progress_bar=False,
            log=lambda *a: None,
        )
        run = tinyllm.load(tmp_path / "reverse")
        answers = [run.complete(word + "|", temperature=0) for word in ("abcdef", "faceda", "bedbad")]
        assert answers == ["fedcba", "adecaf", "dabdeb"]
    finally:
        TASKS.pop("reverse", None)  # leave the collection as the other tests expect it
