"""Shared fixtures. Tests never download: they use the tiny Shakespeare copy in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tinyllm import GPT, GPTConfig

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Point the data lookup at the shared copy unless the caller already chose a folder.
if "TINYLLM_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["TINYLLM_DATA_DIR"] = str(SHARED_DATA)
# absolute, so that subprocesses started in other folders find it too
os.environ["TINYLLM_DATA_DIR"] = str(Path(os.environ.get("TINYLLM_DATA_DIR", SHARED_DATA)).resolve())

torch.set_num_threads(min(2, torch.get_num_threads()))

TINY_MODEL = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32}
# the same tiny shape for tests that drive the command line
TINY_CLI_FLAGS = [
    "--n-layer",
    "1",
    "--n-head",
    "2",
    "--n-embd",
    "16",
    "--block-size",
    "16",
    "--batch-size",
    "4",
    "--eval-iters",
    "1",
    "--no-progress",
]


# decoder shapes for the KV cache and compiled-decoding parity tests
CONFIGS = [
    dict(vocab_size=17, block_size=16, n_layer=1, n_head=1, n_embd=8),
    dict(vocab_size=29, block_size=24, n_layer=2, n_head=4, n_embd=32),
    dict(vocab_size=65, block_size=32, n_layer=3, n_head=2, n_embd=48, bias=False),
]


def make_model(seed=0, sharpen=True, **kw):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**kw)).eval()
    if sharpen:  # random init makes near-uniform logits; sharpen them so greedy choices are clear-cut
        with torch.no_grad():
            model.transformer.wte.weight.mul_(20)
    return model


class Regression(nn.Module):
    """Not a GPT: the trainer only needs `.loss(batch)`."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def loss(self, batch):
        x, y = batch
        return ((self.linear(x) - y) ** 2).mean()


def regression_batches(split, generator):
    x = torch.randn(32, 4, generator=generator)
    return x, x @ torch.tensor([[1.0], [-2.0], [3.0], [0.5]]) + 0.25


TINY_TRAIN = {
    "batch_size": 8,
    "max_iters": 20,
    "max_time": None,
    "eval_interval": 10,
    "eval_iters": 2,
    "warmup_iters": 5,
}


@pytest.fixture(scope="session")
def shakespeare_path() -> Path:
    path = Path(os.environ["TINYLLM_DATA_DIR"]) / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        pytest.fail(f"tiny Shakespeare not found at {path}: set TINYLLM_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny Shakespeare run, trained once for the whole session (a few seconds)."""
    from tinyllm.runs import train

    out = tmp_path_factory.mktemp("runs") / "shakespeare"
    train(
        "shakespeare",
        out_dir=out,
        model_overrides=TINY_MODEL,
        train_overrides=TINY_TRAIN,
        progress_bar=False,
        log=lambda *a: None,
    )
    return out
