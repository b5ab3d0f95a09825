"""Snapshots along a training: the plan, the files, loading them back, --overwrite, the size at the defaults."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import SHAKESPEARE_EXCERPT, TINY_CLI_FLAGS, TINY_MODEL, TINY_TRAIN
from tinyllm.errors import CheckpointError
from tinyllm.inference import load
from tinyllm.resolve import resolve
from tinyllm.runs import train
from tinyllm.snapshots import FIRST, planned_fractions, snapshot_path, snapshot_steps
from tinyllm.tasks import TASKS
from tinyllm.web.library import _count_params


def train_tiny(out, **more):
    return train(
        "shakespeare",
        out_dir=out,
        model_overrides=TINY_MODEL,
        train_overrides={**TINY_TRAIN, **more},
        data_path=SHAKESPEARE_EXCERPT,
        progress_bar=False,
        log=lambda *a: None,
    )


def expected_steps(max_iters: int, count: int) -> list[int]:
    """The first step at or past each planned moment, and the last step."""
    return sorted({math.ceil(f * max_iters - 1e-9) for f in planned_fractions(count)} | {max_iters})


def test_the_plan_is_log_spaced_and_dense_early():
    fractions = planned_fractions(16)
    assert len(fractions) == 16 and fractions[0] == pytest.approx(FIRST) and fractions[0] <= 0.05
    ratios = [b / a for a, b in zip(fractions, fractions[1:], strict=False)]
    assert all(r == pytest.approx(ratios[0]) and r > 1 for r in ratios)  # evenly spaced in log progress
    assert fractions[-1] < 1  # the last step is taken besides these
    assert sum(f < 0.1 for f in fractions) >= 7  # most of them in the first tenth of the run


def test_a_run_keeps_its_snapshots_and_loads_them(tmp_path):
    out = tmp_path / "run"
    train_tiny(out, max_iters=40, snapshots=5)
    steps = snapshot_steps(out)
    assert steps == expected_steps(40, 5) and steps[-1] == 40 and steps[0] <= 2  # first within 5% of the steps
    tensors = load_file(snapshot_path(out, steps[0]))
    assert all(t.dtype == torch.float16 for t in tensors.values())  # weights only, 16-bit
    assert "lm_head.weight" not in tensors  # the tied matrix once
    last, snap = load(out), load(out, checkpoint=f"step:{steps[-1]}")
    # the last snapshot is the saved model, rounded to 16 bits
    for (name, a), b in zip(last.model.state_dict().items(), snap.model.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a.half().float(), rtol=0, atol=0, msg=name)
    early = load(out, checkpoint=f"step:{steps[0]}")
    assert not torch.equal(early.model.transformer.wte.weight, snap.model.transformer.wte.weight)
    with pytest.raises(CheckpointError, match=f"no snapshot at step 3; its snapshots are at steps {steps[0]}, "):
        load(out, checkpoint="step:3")


def test_no_snapshots_with_zero_and_overwrite_removes_them(tmp_path):
    out = tmp_path / "run"
    train_tiny(out, max_iters=10, snapshots=3)
    assert snapshot_steps(out)
    train(
        "shakespeare",
        out_dir=out,
        overwrite=True,
        model_overrides=TINY_MODEL,
        train_overrides={**TINY_TRAIN, "max_iters": 10, "snapshots": 0},
        data_path=SHAKESPEARE_EXCERPT,
        progress_bar=False,
        log=lambda *a: None,
    )
    assert snapshot_steps(out) == [] and not (out / "snapshots").exists()
    with pytest.raises(CheckpointError, match="has no snapshots"):
        load(out, checkpoint="step:10")


def test_the_command_line_samples_and_evaluates_a_snapshot(tmp_path):
    out = tmp_path / "run"
    flags = [*TINY_CLI_FLAGS, "--max-iters", "12", "--snapshots", "3"]
    cli = [sys.executable, "-m", "tinyllm"]
    subprocess.run([*cli, "train", "shakespeare", "--out", str(out), *flags], check=True, capture_output=True)
    step = snapshot_steps(out)[0]
    done = subprocess.run(
        [*cli, "sample", str(out), "--prompt", "to be", "--max-new-tokens", "5", "--checkpoint", f"step:{step}"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.startswith("to be"), done.stderr
    done = subprocess.run(
        [
            *cli,
            "eval",
            str(out),
            "--batches",
            "2",
            "--data",
            SHAKESPEARE_EXCERPT,
            "--checkpoint",
            f"step:{step}",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and '"test_loss"' in done.stdout, done.stderr
    missing = subprocess.run(
        [*cli, "sample", str(out), "--prompt", "a", "--checkpoint", "step:999999"], capture_output=True, text=True
    )
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.count("\n") == 1 and f"snapshots are at steps {step}, " in missing.stderr
    typo = subprocess.run(
        [*cli, "sample", str(out), "--prompt", "a", "--checkpoint", "step:ten"], capture_output=True, text=True
    )
    assert typo.returncode == 2 and "step:N" in typo.stderr


@pytest.mark.parametrize("task_name", list(TASKS))
def test_snapshots_at_the_defaults_fit_in_32_mb(task_name):
    settings = resolve(task_name, {})
    vocab = {"text": 1024, "shakespeare": 65}.get(task_name, 256)  # BPE's default vocabulary, or more than any
    params = _count_params({"vocab_size": vocab, **settings.model})
    assert settings.train.snapshots == 16
    assert (settings.train.snapshots + 1) * params * 2 <= 32 * 2**20  # 16 moments + the last step, 2 bytes each
