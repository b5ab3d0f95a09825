"""Crash safety, Ctrl-C, NaN, reproducibility, disk errors and fuzzing."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyllm
from tinyllm import GPT, GPTConfig
from tinyllm.checkpoint import load_tensors
from tinyllm.errors import ConfigError, UsageError
from tinyllm.runs import train
from tinyllm.sampling import SamplingParams, generate
from tinyllm.tasks import TaskModel
from tinyllm.training import NonFiniteLossError

from .conftest import SHAKESPEARE_EXCERPT, TINY_CLI_FLAGS, TINY_MODEL, TINY_TRAIN

TINY_FLAGS = TINY_CLI_FLAGS


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def start_training(out: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "tinyllm", "train", "shakespeare", "--out", str(out), *TINY_FLAGS, *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_lines(run: Path, more_than: int, proc: subprocess.Popen, timeout: float = 60) -> bool:
    """Poll metrics.jsonl until it has more than `more_than` lines (bounded in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if (run / "metrics.jsonl").read_text().count("\n") > more_than:
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    return False


@pytest.mark.slow
def test_sigkill_at_any_moment_loses_nothing_but_the_last_steps(tmp_path):
    """4 SIGKILLs at varied moments, with a checkpoint every step (so many land inside writes)."""
    run = tmp_path / "run"
    max_iters = 120
    schedule = ["--max-iters", str(max_iters), "--eval-interval", "10", "--checkpoint-interval", "1"]
    kills = 0
    for attempt in range(4):
        resuming = ["--resume"] if (run / "config.json").exists() else []
        done = len(metrics(run)) if (run / "metrics.jsonl").exists() else 0
        proc = start_training(run, *schedule, *resuming)
        if wait_for_lines(run, done, proc):
            time.sleep((attempt * 7 % 13) / 1000)  # 0, 7, 1, 8 ms into training: mid-step or mid-write
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=60)
        # whatever the moment, what is on disk is a run that resumes
        if (run / "resume.safetensors").exists():
            _, meta = load_tensors(run / "resume.safetensors")
            assert 1 <= meta["iter"] <= max_iters
    assert kills >= 3

    proc = start_training(run, *schedule, "--resume")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    iters = [r["iter"] for r in metrics(run)]
    assert iters == list(range(1, max_iters + 1))  # continuous: no gap, no duplicate
    assert not list(run.glob(".*.tmp*"))  # no half-written files left
    model = tinyllm.load(run).model
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    run = tmp_path / "run"
    proc = start_training(run, "--max-iters", "100000", "--eval-interval", "1000")
    assert wait_for_lines(run, 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "--resume" in err and "Traceback" not in err
    _, meta = load_tensors(run / "resume.safetensors")
    assert meta["iter"] == metrics(run)[-1]["iter"] >= 3  # the checkpoint is the step it stopped at

    proc = start_training(run, "--max-iters", str(meta["iter"] + 5), "--resume")
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert [r["iter"] for r in metrics(run)] == list(range(1, meta["iter"] + 6))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    original = TaskModel.loss
    calls = {"n": 0}

    def loss_that_explodes(self, batch):
        calls["n"] += 1 if self.training else 0
        value = original(self, batch)
        return value * float("nan") if self.training and calls["n"] > 12 else value

    monkeypatch.setattr(TaskModel, "loss", loss_that_explodes)
    with pytest.raises(NonFiniteLossError, match="iteration 13"):
        train(
            "shakespeare",
            data_path=SHAKESPEARE_EXCERPT,
            out_dir=tmp_path / "r",
            model_overrides=TINY_MODEL,
            train_overrides=TINY_TRAIN,
            progress_bar=False,
            log=lambda *a: None,
        )
    _, meta = load_tensors(tmp_path / "r" / "resume.safetensors")
    assert meta["iter"] == 10  # the evaluation checkpoint before the NaN
    assert all(torch.isfinite(p).all() for p in tinyllm.load(tmp_path / "r").model.parameters())


def test_same_seed_same_metrics(tmp_path):
    settings_ = dict(model_overrides=TINY_MODEL, progress_bar=False, log=lambda *a: None)
    runs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        train(
            "shakespeare",
            data_path=SHAKESPEARE_EXCERPT,
            out_dir=tmp_path / name,
            train_overrides={**TINY_TRAIN, "max_iters": 50, "eval_interval": 25, "seed": seed},
            **settings_,
        )
        # timings differ from run to run; every other figure must be bit-identical
        runs.append(
            [{k: v for k, v in r.items() if k not in ("tokens_per_s", "elapsed_s")} for r in metrics(tmp_path / name)]
        )
    assert len(runs[0]) == 50
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_unwritable_output_is_a_clear_error(tmp_path, capsys):
    from tinyllm.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["train", "shakespeare", "--out", str(blocker / "run"), *TINY_FLAGS, "--max-iters", "2"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot write the run directory" in err and len(err.strip().splitlines()) == 1


def test_full_disk_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import errno

    import tinyllm.rundir
    from tinyllm.cli import main

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tinyllm.rundir, "save_tensors", no_space)
    code = main(
        [
            "train",
            "shakespeare",
            "--out",
            str(tmp_path / "run"),
            *TINY_FLAGS,
            "--max-iters",
            "2",
            "--eval-interval",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["no tokenizer", "truncated config", "wrong vocab"])
def test_damaged_run_files_name_the_file(tiny_run, tmp_path, damage):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    if damage == "no tokenizer":
        (run / "tokenizer.json").unlink()
        expected = "tokenizer.json"
    elif damage == "truncated config":
        (run / "config.json").write_text((run / "config.json").read_text()[:40])
        expected = "config.json"
    else:
        (run / "tokenizer.json").write_text(json.dumps({"type": "char", "chars": "abc", "lowercase": True}))
        expected = "tokenizer.json"
    with pytest.raises(tinyllm.TinyLLMError, match=expected):
        tinyllm.load(run)


# ---------------------------------------------------------------- fuzzing

small_ints = st.integers(-3, 40)


@settings(max_examples=60, deadline=None)
@given(
    vocab=small_ints,
    block=small_ints,
    layers=st.integers(-1, 3),
    heads=small_ints,
    embd=small_ints,
    dropout=st.floats(-1, 2),
)
def test_no_invalid_config_constructs_a_model(vocab, block, layers, heads, embd, dropout):
    valid = (
        vocab >= 1
        and block >= 1
        and layers >= 1
        and heads >= 1
        and embd >= 1
        and embd % heads == 0
        and 0 <= dropout < 1
    )
    try:
        config = GPTConfig(
            vocab_size=vocab, block_size=block, n_layer=layers, n_head=heads, n_embd=embd, dropout=dropout
        )
    except ConfigError:
        assert not valid
        return
    assert valid
    model = GPT(config).eval()
    assert model(torch.zeros(1, block, dtype=torch.long)).shape == (1, block, vocab)


FUZZ_MODEL = GPT(GPTConfig(vocab_size=23, block_size=8, n_layer=1, n_head=2, n_embd=16)).eval()


@settings(max_examples=80, deadline=None)
@given(
    temperature=st.one_of(st.just(0.0), st.floats(0.01, 5)),
    top_k=st.one_of(st.none(), st.integers(1, 40)),
    top_p=st.one_of(st.none(), st.floats(1e-6, 1.0)),
    min_p=st.one_of(st.none(), st.floats(0.0, 1.0)),
    repetition_penalty=st.floats(0.1, 5),
    batch=st.integers(1, 3),
    new=st.integers(0, 20),
    use_cache=st.booleans(),
)
def test_any_valid_sampling_options_give_tokens_in_the_vocabulary(
    temperature, top_k, top_p, min_p, repetition_penalty, batch, new, use_cache
):
    params = SamplingParams(temperature, top_k, top_p, min_p, repetition_penalty)
    out = generate(
        FUZZ_MODEL,
        torch.zeros(batch, 2, dtype=torch.long),
        new,
        params,
        use_cache=use_cache,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.shape == (batch, 2 + new)
    assert out.min() >= 0 and out.max() < 23


@settings(max_examples=40, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_temperature_is_valid_or_a_usage_error(t):
    try:
        SamplingParams(temperature=t)
    except UsageError:
        assert not (math.isfinite(t) and t >= 0)
    else:
        assert math.isfinite(t) and t >= 0


def test_environment_is_not_needed_for_loading(tiny_run, monkeypatch):
    monkeypatch.delenv("TINYLLM_DATA_DIR", raising=False)  # sampling a run needs no data
    assert len(tinyllm.load(tiny_run).complete("a", max_new_tokens=3, seed=0)) == 3
