"""Weight averaging: end a run on the average of its last weights, not on the last step's alone.

Every optimizer step moves the weights in a direction drawn from one small, noisy batch, so at the
end of a run the weights jitter around where the optimizer is heading. Their running average
jitters less and scores a little better on text the model never saw (Polyak averaging; SWA, and the
EMA that most image and diffusion models are trained with). `WeightAverage` keeps, for each
parameter, an exponential moving average (EMA):

    average <- decay * average + (1 - decay) * weights        (after each step)

which weighs the last ~1 / (1 - decay) steps: 0.995, about the last 200. `average_weights(trainer)`
makes it a listener of the trainer's "update" event, which folds the weights in over the final `--decay-fraction` of the budget only, where the learning rate falls and
the weights being averaged are already close together (averaging weights from far apart, earlier
in the run, would mix models that do not agree), and at the end puts the average in the weights'
place: the last evaluation, the saved model and everything sampled from it use the average.

The average must also be short next to the phase it averages over, or it mixes in weights from
the phase's start that the falling rate has since improved on: in a run of 300 steps (a 60-step
decay) a plain 0.98 made the test loss 0.02 worse. So the window is capped at a quarter of the
phase: `decay_now` estimates how many steps the phase will take from the run's pace so far (steps
taken over the share of the budget used) and shortens the average where 1 / (1 - decay) would be
longer. A 5-minute run (about 850 steps of decay) keeps the full 0.995; a 300-step run averages
over about its last 15 steps and ends 0.002-0.003 worse than with no average at all, not 0.02.

On the 5-minute Shakespeare model averaging lowered the test loss by 0.008-0.009 over ~50 steps
(0.98; three seeds on a 2-core AMD EPYC Zen 4), and by 0.004 more over ~200 (0.995, the default;
six pairs of runs, four seeds). docs/log.md has the figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from .errors import CheckpointError

if TYPE_CHECKING:
    from .training import Trainer

__all__ = ["WeightAverage", "average_weights"]

WINDOW_SHARE = 0.25  # the average spans at most this share of the averaging phase's steps


class WeightAverage:
    """An exponential moving average of `params` (their values; no gradients flow through it)."""

    def __init__(self, params: list[nn.Parameter], decay: float, start: float = 0.0) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.params = params
        self.decay = decay
        self.start = start  # how far through its budget a run is when the averaging begins, 0..1
        self.average: list[torch.Tensor] | None = None  # None until the first update

    def after_step(self, progress: float, steps: int, end: bool) -> None:
        """The trainer's call after each of its `steps`, `progress` (0..1) through the budget: average
        from `start` on; at the end, use the average."""
        if progress >= self.start:
            self.update(self.decay_now(progress, steps))
        if end:
            self.copy_to_weights()

    def decay_now(self, progress: float, steps: int) -> float:
        """`decay`, or less where the averaging phase is short: 1 / (1 - decay), the steps the average
        spans, kept within WINDOW_SHARE of the steps the phase takes at the run's pace so far."""
        if progress <= 0:  # no budget (or no step yet) to measure the phase by
            return self.decay
        phase_steps = (1 - self.start) * steps / progress  # exact under --max-iters, estimated under --max-time
        longest = WINDOW_SHARE * phase_steps
        return min(self.decay, 1 - 1 / longest) if longest > 1 else 0.0  # 0: the average is the weights

    @torch.no_grad()
    def update(self, decay: float | None = None) -> None:
        """Fold the weights as they are now into the average, keeping `decay` of it (by default the
        constructor's); the first call starts the average from the weights."""
        decay = self.decay if decay is None else decay
        if self.average is None:
            self.average = [p.detach().clone() for p in self.params]
            return
        for average, p in zip(self.average, self.params, strict=True):
            average.lerp_(p, 1 - decay)  # average + (1 - decay) (p - average)

    @torch.no_grad()
    def copy_to_weights(self) -> None:
        """Put the average in the weights' place (nothing happens before the first update)."""
        if self.average is None:
            return
        for average, p in zip(self.average, self.params, strict=True):
            p.copy_(average)

    def state_dict(self) -> list[torch.Tensor] | None:
        return self.average

    def load_state_dict(self, average: list[torch.Tensor] | None) -> None:
        if average is not None:
            if [a.shape for a in average] != [p.shape for p in self.params]:
                raise CheckpointError("the resume file's weight average does not match the model's parameters")
            average = [a.to(p.device, p.dtype) for a, p in zip(average, self.params, strict=True)]
        self.average = average


def average_weights(trainer: Trainer) -> WeightAverage | None:
    """With `--ema-decay`, average `trainer`'s weights over the final `--decay-fraction` of its budget
    and end the run on the average: a listener of the trainer's "update" event, whose average is kept
    in the resume state. Returns it (None when the config asks for no averaging)."""
    config = trainer.config
    if not config.ema_decay:
        return None
    average = WeightAverage(trainer.params, config.ema_decay, start=1 - config.decay_fraction)

    def after_step(trainer: Trainer, final: bool) -> None:  # fold these weights in; at the end, use the average
        average.after_step(trainer.progress(), trainer.iter, end=final)

    trainer.add_callback("update", after_step)
    trainer.add_state("weight_average", average)
    return average
