"""Snapshots: the model's weights at moments along a training, so that you can watch it learn.

    runs/shakespeare/snapshots/
      step_12.safetensors      weights only, in 16-bit floats (half the size; the page cannot tell)
      step_17.safetensors
      ...
      step_5109.safetensors    the last step

Most of what a model learns, it learns early: the loss falls fastest in the first few percent of
the run, which is when attention heads form and the embeddings sort themselves out. So the moments
are spaced evenly in *log* progress (progress is the share of the budget used: steps of
`--max-iters`, or seconds of `--max-time`): with 16 snapshots the first comes at 0.5% of the budget
and each later one about 1.4 times further in, then one more at the last step. A run of 5,000 steps
keeps steps 25, 35, 49, 70, 98, ..., 3587 and 5000.

`take_snapshots(trainer, run_dir)` makes it a listener of the trainer's "update" event (after the
weights averaging, so the last snapshot is the averaged model that was saved). Only the process
that writes the run directory listens (rank 0 of a torchrun job). Resuming continues the plan where
the resumed checkpoint stood and first drops snapshots taken after it (they are taken again);
`--overwrite` removes them all with the rest of the run. `tinyllm sample RUN --checkpoint step:N`
and the page's step slider read them back.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .checkpoint import load_tensors, model_tensors, save_tensors
from .errors import CheckpointError, UsageError

if TYPE_CHECKING:
    from .training import Trainer

FOLDER = "snapshots"
FIRST = 0.005  # the first snapshot, as a share of the budget
DTYPE = torch.float16  # 10 bits of mantissa: the attention and lens figures agree with float32 to ~1e-3
NAME = re.compile(r"step_(\d+)\.safetensors")


def planned_fractions(n: int) -> list[float]:
    """The `n` moments (shares of the budget, before the last step), log-spaced from `FIRST` on:
    FIRST * (1 / FIRST) ** (k / n) for k = 0 .. n-1."""
    return [FIRST ** (1 - k / n) for k in range(n)]


def snapshot_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / FOLDER / f"step_{step}.safetensors"


def snapshot_steps(run_dir: Path) -> list[int]:
    """The steps a run has snapshots of, ascending (none when it has no snapshots folder)."""
    folder = Path(run_dir) / FOLDER
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := NAME.fullmatch(p.name)))


def remove_snapshots(run_dir: Path, after: int | None = None) -> None:
    """Remove every snapshot (after=None), or those of steps after `after`."""
    folder = Path(run_dir) / FOLDER
    if after is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for step in snapshot_steps(run_dir):
        if step > after:
            snapshot_path(run_dir, step).unlink(missing_ok=True)


def parse_step(checkpoint: str) -> int | None:
    """The N of a "step:N" checkpoint name; None for any other name."""
    if not isinstance(checkpoint, str) or not checkpoint.startswith("step:"):
        return None
    text = checkpoint[len("step:") :]
    if not text.isdigit():
        raise UsageError(f"checkpoint {checkpoint!r}: write step:N with N a step number, like step:500")
    return int(text)


def nearest(steps: list[int], step: int, count: int = 3) -> list[int]:
    """The `count` snapshot steps closest to `step`, ascending."""
    return sorted(sorted(steps, key=lambda s: (abs(s - step), s))[:count])


def missing_step_message(run_dir: Path, step: int, nearest_only: bool = False) -> str:
    """ "No snapshot at step N", with the steps there are (all of them, or only the nearest three)."""
    steps = snapshot_steps(run_dir)
    if not steps:
        return f"{Path(run_dir).name} has no snapshots (train with --snapshots N to keep some)"
    if nearest_only:
        shown = ", ".join(map(str, nearest(steps, step)))
        return f"no snapshot at step {step}; the nearest are at steps {shown} ({len(steps)} in all)"
    return f"{run_dir} has no snapshot at step {step}; its snapshots are at steps {', '.join(map(str, steps))}"


def load_snapshot(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    """The weights of the snapshot at `step`, in float32; a clear error listing the steps there are."""
    path = snapshot_path(run_dir, step)
    if not path.is_file():
        raise CheckpointError(missing_step_message(run_dir, step))
    tensors, _ = load_tensors(path)
    return {name: t.float() for name, t in tensors.items()}


class SnapshotTaker:
    """Writes a snapshot each time the run's progress passes one of the planned moments, and at its end."""

    def __init__(self, run_dir: Path, count: int, progress: float, step: int) -> None:
        self.run_dir = Path(run_dir)
        self.fractions = planned_fractions(count)
        self.passed = self._passed(progress)  # moments already behind us (a resumed run)
        remove_snapshots(self.run_dir, after=step)  # taken after the checkpoint we resume from

    def _passed(self, progress: float) -> int:
        return sum(f <= progress for f in self.fractions)

    def after_step(self, trainer: Trainer, final: bool) -> None:
        passed = self._passed(trainer.progress())
        if final or passed > self.passed:
            self.save(trainer)
        self.passed = passed

    def save(self, trainer: Trainer) -> None:
        weights = {name: t.to(DTYPE) for name, t in model_tensors(trainer.model.gpt).items()}
        path = snapshot_path(self.run_dir, trainer.iter)
        path.parent.mkdir(exist_ok=True)
        save_tensors(path, weights, {"iter": trainer.iter, "elapsed_s": round(trainer.elapsed, 3)})


def take_snapshots(trainer: Trainer, run_dir: Path) -> SnapshotTaker | None:
    """Keep `trainer.config.snapshots` snapshots of the run in `run_dir` (none when it is 0)."""
    count = trainer.config.snapshots
    if count == 0:
        return None
    taker = SnapshotTaker(run_dir, count, trainer.progress(), trainer.iter)
    trainer.add_callback("update", taker.after_step)
    return taker
