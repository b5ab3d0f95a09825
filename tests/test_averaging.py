"""Ending a run on the weights' average (averaging.py): the maths, the cap on its span, and the
listener that folds each step's weights in and ends the run on the average."""

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from tinyllm.averaging import WeightAverage, average_weights
from tinyllm.config import TrainConfig
from tinyllm.runs import train
from tinyllm.training import Trainer

from .conftest import SHAKESPEARE_EXCERPT, TINY_MODEL, TINY_TRAIN, Regression, regression_batches


def test_weight_average_math():
    weights = nn.Parameter(torch.tensor([0.0, 4.0]))
    average = WeightAverage([weights], decay=0.75)
    average.copy_to_weights()  # before the first update: nothing to copy
    assert weights.tolist() == [0.0, 4.0]
    average.update()  # starts from the weights
    with torch.no_grad():
        weights.fill_(8.0)
    average.update()  # 0.75 of the average, 0.25 of the weights
    assert average.state_dict()[0].tolist() == [2.0, 5.0]
    average.copy_to_weights()
    assert weights.tolist() == [2.0, 5.0]
    with pytest.raises(ValueError):
        WeightAverage([weights], decay=1.0)
    late = WeightAverage([weights], decay=0.5, start=0.8)  # as the trainer makes it: the last 20% only
    late.after_step(0.7, steps=70, end=False)
    assert late.state_dict() is None  # not yet
    late.after_step(0.8, steps=80, end=False)
    with torch.no_grad():
        weights.fill_(4.0)
    late.after_step(1.0, steps=100, end=True)  # folds the last weights in, then puts the average in their place
    assert weights.tolist() == [3.0, 4.5]


def test_weight_average_spans_at_most_a_quarter_of_its_phase():
    """The window 1 / (1 - decay) is capped at a quarter of the averaging phase's steps, estimated
    from the run's pace: 0.98 (50 steps) stays in a long phase and shrinks in a short one."""
    average = WeightAverage([nn.Parameter(torch.zeros(1))], decay=0.98, start=0.8)
    assert average.decay_now(progress=0.9, steps=9000) == 0.98  # a 2,000-step phase: 50 steps fit in 500
    assert average.decay_now(progress=0.9, steps=90) == pytest.approx(0.8)  # a 20-step phase: at most 5 steps
    assert average.decay_now(progress=0.9, steps=18) == 0.0  # a 4-step phase: the average is the weights
    assert average.decay_now(progress=0.45, steps=90) == pytest.approx(0.9)  # half the pace: twice the steps
    ends_at_once = WeightAverage([nn.Parameter(torch.zeros(1))], decay=0.98, start=1.0)  # --decay-fraction 0
    assert ends_at_once.decay_now(progress=1.0, steps=100) == 0.0


def test_run_ends_on_the_average_of_its_final_steps(tmp_path, monkeypatch):
    """--ema-decay: the weights after steps 9 to 16 of 16 (the last half) averaged; the rest not."""
    raw = []  # each step's weights, before any averaging touches them
    original_step = Trainer.step

    def step_and_record(self):
        record = original_step(self)
        raw.append({name: p.detach().clone() for name, p in self.model.gpt.named_parameters()})
        return record

    monkeypatch.setattr(Trainer, "step", step_and_record)
    # an 8-step phase: the window 1 / (1 - 0.5) = 2 steps is within its quarter, so 0.5 holds throughout
    overrides = {**TINY_TRAIN, "max_iters": 16, "schedule": "wsd", "decay_fraction": 0.5, "ema_decay": 0.5}
    train("shakespeare", data_path=SHAKESPEARE_EXCERPT, out_dir=tmp_path / "run", model_overrides=TINY_MODEL, train_overrides=overrides,
          progress_bar=False, log=lambda *a: None)  # fmt: skip
    saved = load_file(tmp_path / "run" / "model.safetensors")
    for name, last in raw[-1].items():
        expected = raw[7][name]  # the weights after step 8 (progress 0.5) start the average
        for later in raw[8:]:
            expected = expected * 0.5 + later[name] * 0.5
        assert torch.allclose(saved[name], expected, atol=1e-6), name
        assert not torch.allclose(saved[name], last), name  # not simply the last step's weights


def test_the_average_is_a_listener_with_its_state_in_the_resume_file():
    plain = Trainer(Regression(), regression_batches, TrainConfig(max_iters=4, device="cpu"))
    assert average_weights(plain) is None and "weight_average" not in plain.state_dict()  # --ema-decay 0: none
    config = TrainConfig(max_iters=4, device="cpu", ema_decay=0.5, schedule="wsd", decay_fraction=0.5)
    trainer = Trainer(Regression(), regression_batches, config)
    average = average_weights(trainer)
    assert trainer.callbacks["update"] and trainer.state_dict()["weight_average"] is None  # nothing averaged yet
    trainer.run(progress_bar=False)
    saved = trainer.state_dict()["weight_average"]
    assert saved is average.average and all(torch.equal(a, p) for a, p in zip(saved, trainer.params, strict=True))
    again = Trainer(Regression(), regression_batches, config)
    average_weights(again).average = None
    again.load_state_dict(trainer.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(again.listener_states["weight_average"].average, saved, strict=True))
