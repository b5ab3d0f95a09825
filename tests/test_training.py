import json
import math
import shutil

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from tinyllm.config import TrainConfig
from tinyllm.errors import ConfigError
from tinyllm.runs import Interrupted, train
from tinyllm.schedule import budget_progress, learning_rate
from tinyllm.snapshots import snapshot_path, snapshot_steps
from tinyllm.speed.onednn import onednn_available
from tinyllm.training import Trainer, make_optimizer

from .conftest import SHAKESPEARE_EXCERPT, TINY_MODEL, TINY_TRAIN, Regression, regression_batches


def read(path):
    return [json.loads(line) for line in open(path)]


def test_trainer_is_generic_and_learns():
    records = []
    trainer = Trainer(
        Regression(),
        regression_batches,
        TrainConfig(
            lr=0.05, max_iters=300, warmup_iters=10, eval_interval=100, eval_iters=2, device="cpu", weight_decay=0.0
        ),
    )
    trainer.add_callback("step", lambda trainer, record: records.append(record))
    trainer.run(progress_bar=False)
    assert [r["iter"] for r in records] == list(range(1, 301))
    assert records[-1]["test_loss"] < 1e-3
    assert {"iter", "train_loss", "lr", "tokens_per_s", "elapsed_s"} <= set(records[0])


def test_progress_bar_is_redrawn_at_most_every_tenth_of_a_second(capsys):
    """A step can take a millisecond: redrawing the bar each step would fill a log file with a line a
    step. It is drawn every 0.1 s, at every evaluation, and once more, with the last step, at the end."""
    config = TrainConfig(lr=0.05, max_iters=300, warmup_iters=10, eval_interval=100, eval_iters=2, device="cpu")
    trainer = Trainer(Regression(), regression_batches, config)
    trainer.run(progress_bar=True)
    drawn = capsys.readouterr().err.split("\r")
    drawings = [d for d in drawn if "iter " in d]
    assert len(drawings) <= trainer.elapsed / 0.1 + 3 + 2 + 2  # the clock, 3 evaluations, first and last
    assert len(drawings) < 300 / 2
    assert "iter 300 " in drawings[-1] and "test " in drawings[-1]


def test_weight_decay_only_on_matrices():
    model = nn.Sequential(nn.Embedding(10, 8), nn.LayerNorm(8), nn.Linear(8, 8))
    opt = make_optimizer(model, TrainConfig(weight_decay=0.1), torch.device("cpu"))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and all(p.dim() == 1 for p in plain["params"])
    assert len(decayed["params"]) == 2 and len(plain["params"]) == 3


def test_schedule_warms_up_then_decays_to_the_floor():
    trainer = Trainer(
        Regression(),
        regression_batches,
        TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=10, max_iters=100, device="cpu"),
    )
    lrs = [trainer.lr_at(i, 0.0) for i in range(100)]
    assert lrs[0] < lrs[5] < lrs[9] <= 1e-3  # linear warm-up
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # then never rises
    assert math.isclose(trainer.lr_at(100, 0.0), 1e-4)  # ends at the floor


def test_time_budget_drives_the_schedule():
    trainer = Trainer(
        Regression(),
        regression_batches,
        TrainConfig(lr=1e-3, min_lr=0.0, warmup_iters=0, max_iters=None, max_time=60, device="cpu"),
    )
    assert math.isclose(trainer.lr_at(5, 30.0), 0.5e-3)  # half the time: half way down the cosine
    assert math.isclose(trainer.lr_at(5, 60.0), 0.0, abs_tol=1e-12)


def test_the_schedule_follows_whichever_budget_is_nearer_its_end():
    # a pure function of (config, step, seconds): the Trainer's lr_at is this, nothing else
    config = TrainConfig(lr=1e-3, min_lr=0.0, warmup_iters=0, max_iters=100, max_time=60, device="cpu")
    assert budget_progress(config, 25, 45.0) == 0.75  # time is further along
    assert budget_progress(config, 90, 6.0) == 0.9  # steps are further along
    assert budget_progress(config, 500, 600.0) == 1.0  # never past the end
    assert math.isclose(learning_rate(config, 25, 45.0), learning_rate(config, 75, 0.0))
    # WSD: the peak until the last 20% of the budget, then halfway down at 90%, the floor at the end
    wsd = TrainConfig(lr=1e-3, min_lr=0.0, warmup_iters=0, max_iters=100, schedule="wsd", device="cpu")
    assert all(math.isclose(learning_rate(wsd, it, 0.0), 1e-3) for it in (0, 75, 80))
    assert math.isclose(learning_rate(wsd, 90, 0.0), 0.5e-3)
    assert learning_rate(wsd, 85, 0.0) < learning_rate(wsd, 81, 0.0) < 1e-3
    assert math.isclose(learning_rate(wsd, 100, 0.0), 0.0, abs_tol=1e-12)


@pytest.mark.parametrize(
    "kw",
    [
        {"max_iters": None, "max_time": None},
        {"lr": -1},
        {"batch_size": 0},
        {"min_lr": 1.0},
        {"device": "tpu"},
        {"max_time": 0},
        {"ema_decay": 1.0},
        {"ema_decay": -0.5},
    ],
)
def test_invalid_training_configs(kw):
    with pytest.raises(ConfigError):
        TrainConfig(**kw)


@pytest.mark.parametrize(
    "cpu_matmul, optimizer, muon_dtype, more",
    [
        ("default", "adamw", "auto", {}),
        pytest.param(
            "onednn", "adamw", "auto", {}, marks=pytest.mark.skipif(not onednn_available(), reason="no oneDNN")
        ),
        ("default", "muon", "float32", {}),  # Muon's momentum buffers are saved and restored too
        ("default", "muon", "bfloat16", {}),  # and its Newton-Schulz precision is chosen again alike
        # the weights' running average, begun at step 12 (before the cut at 15), is saved and restored
        ("default", "muon", "float32", {"ema_decay": 0.9, "schedule": "wsd", "decay_fraction": 0.6}),
    ],
)
def test_resume_continues_iteration_count_and_learning_rate(
    tmp_path, monkeypatch, cpu_matmul, optimizer, muon_dtype, more
):
    train_overrides = {**TINY_TRAIN, "max_iters": 30, "optimizer": optimizer, "muon_dtype": muon_dtype, **more}
    settings = dict(
        model_overrides=TINY_MODEL,
        train_overrides={**train_overrides, "cpu_matmul": cpu_matmul},
        progress_bar=False,
        log=lambda *a: None,
    )
    train("shakespeare", data_path=SHAKESPEARE_EXCERPT, out_dir=tmp_path / "full", **settings)

    # stop the second run after step 15, as Ctrl-C would: it checkpoints and raises Interrupted
    original_step = Trainer.step

    def step_then_stop(self):
        record = original_step(self)
        if self.iter == 15:
            self.interrupted = True
        return record

    monkeypatch.setattr(Trainer, "step", step_then_stop)
    with pytest.raises(Interrupted, match="--resume"):
        train("shakespeare", data_path=SHAKESPEARE_EXCERPT, out_dir=tmp_path / "cut", **settings)
    monkeypatch.setattr(Trainer, "step", original_step)
    assert [r["iter"] for r in read(tmp_path / "cut" / "metrics.jsonl")] == list(range(1, 16))
    # a snapshot written after the checkpoint (by a run killed later) is stale: resuming replaces it
    later = next(step for step in snapshot_steps(tmp_path / "full") if step > 15)
    shutil.copy(snapshot_path(tmp_path / "cut", 1), snapshot_path(tmp_path / "cut", later))
    shutil.copy(snapshot_path(tmp_path / "cut", 1), snapshot_path(tmp_path / "cut", 29))  # off the plan: removed

    result = train("shakespeare", data_path=SHAKESPEARE_EXCERPT, out_dir=tmp_path / "cut", resume=True, **settings)
    assert result.iters == 30
    full, resumed = read(tmp_path / "full" / "metrics.jsonl"), read(tmp_path / "cut" / "metrics.jsonl")
    assert [r["iter"] for r in resumed] == list(range(1, 31))  # continuous: nothing lost or repeated
    assert [r["lr"] for r in resumed] == [r["lr"] for r in full]  # the schedule picks up where it left
    # model, optimizer and RNG state were all restored: the very same losses
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in full]
    assert resumed[-1]["test_loss"] == full[-1]["test_loss"]
    full_weights, resumed_weights = (load_file(tmp_path / run / "model.safetensors") for run in ("full", "cut"))
    assert all(torch.equal(full_weights[name], resumed_weights[name]) for name in full_weights)
    # the snapshots continue the plan: the same steps and weights as the run that was never cut
    assert snapshot_steps(tmp_path / "cut") == snapshot_steps(tmp_path / "full")
    for step in snapshot_steps(tmp_path / "full"):
        full_snap, cut_snap = (load_file(snapshot_path(tmp_path / run, step)) for run in ("full", "cut"))
        assert all(torch.equal(full_snap[name], cut_snap[name]) for name in full_snap), step


def test_existing_run_is_not_overwritten(tiny_run):
    from tinyllm.errors import UsageError

    with pytest.raises(UsageError, match="--resume"):
        train(
            "shakespeare",
            data_path=SHAKESPEARE_EXCERPT,
            out_dir=tiny_run,
            model_overrides=TINY_MODEL,
            train_overrides=TINY_TRAIN,
            progress_bar=False,
        )


def test_plots_are_valid_pngs(tiny_run):
    import matplotlib.image

    for name in ("train_loss.png", "test_loss.png", "lr.png"):
        path = tiny_run / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert image.std() > 0  # something is drawn


@pytest.mark.parametrize(("every_s", "drawings"), [(0.0, 3), (3600.0, 2)])
def test_plots_are_redrawn_at_most_every_plot_every_s(tmp_path, monkeypatch, every_s, drawings):
    """Drawing PNGs costs training time: while training they are redrawn at an evaluation only when
    PLOT_EVERY_S has passed since the last drawing (the first evaluation always draws), and at the end."""
    import tinyllm.runs as runs

    drawn = []
    monkeypatch.setattr(runs, "PLOT_EVERY_S", every_s)
    monkeypatch.setattr(runs, "plot_run", lambda path, title="": drawn.append(path) or [])
    settings = dict(model_overrides=TINY_MODEL, train_overrides=TINY_TRAIN, progress_bar=False)
    train(
        "shakespeare", data_path=SHAKESPEARE_EXCERPT, out_dir=tmp_path / "run", **settings
    )  # 20 steps, evaluated at 10 and 20
    assert len(drawn) == drawings  # every evaluation + the end, or the first evaluation + the end
