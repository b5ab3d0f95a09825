r"""The learning-rate schedule: warm up, then down to a floor, fitted to the run's budget.

nanoGPT's `get_lr`, with two changes. The budget can be steps (`max_iters`), seconds (`max_time`) or
both: the schedule follows whichever is nearer its end, so that a 5-minute run reaches its floor
when the 5 minutes are up, however fast the machine. And after the warm-up it is either a cosine
over the whole budget, or warm-up-stable-decay (WSD): the peak rate for most of the run, then a
straight line down over its last `decay_fraction`. WSD keeps learning fast for longer and gets its
gain at the end, where the falling rate lets the loss settle (Hägele et al. 2024).

       cosine                               wsd
    lr |  .--.._                         lr |  .---------------.
       | /      ''-._                       | /                 \
       |/            ''--..__ min_lr        |/                   \_ min_lr
       +------------------------> budget    +------------------------> budget
"""

from __future__ import annotations

import math

from .config import TrainConfig

__all__ = ["budget_progress", "learning_rate"]


def budget_progress(config: TrainConfig, it: int, elapsed: float) -> float:
    """How far through its budget a run is, 0..1: the larger of the step and time fractions."""
    fractions = [
        it / config.max_iters if config.max_iters else 0.0,  # a budget that is not set counts as 0
        elapsed / config.max_time if config.max_time else 0.0,
    ]
    return min(1.0, max(fractions))


def learning_rate(config: TrainConfig, it: int, elapsed: float) -> float:
    """The learning rate for step `it` (counted from 0) after `elapsed` seconds of training."""
    lr = config.lr
    min_lr = lr / 10 if config.min_lr is None else config.min_lr
    # 1) linear warm-up for warmup_iters steps
    if it < config.warmup_iters:
        return lr * (it + 1) / (config.warmup_iters + 1)
    # 2) then follow whichever budget (steps or time) is nearer its end
    progress = budget_progress(config, it, elapsed)
    if config.schedule == "wsd":
        # 3a) warm-up, stable, decay: the peak rate until the last decay_fraction, then linearly down
        left = min(1.0, (1.0 - progress) / config.decay_fraction)  # 1 until the decay starts, 0 at the end
        return min_lr + left * (lr - min_lr)
    # 3b) cosine: from lr down to min_lr over the whole budget
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return min_lr + cosine * (lr - min_lr)
