"""Shared fixtures. Tests never download and need nothing beside the clone: text comes from
`tests/data/shakespeare_excerpt.txt`; the few tests that need the exact full corpus ask for the
`shakespeare_path` fixture, which finds it through TINYLLM_DATA_DIR or the download cache, or skips.

Under pytest-xdist each worker process computes with one thread (the workers share the cores)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tinyllm import GPT, GPTConfig
from tinyllm.data import TINY_SHAKESPEARE, cache_dir

SHAKESPEARE_EXCERPT = str(Path(__file__).resolve().parent / "data" / "shakespeare_excerpt.txt")


def _full_corpus() -> Path | None:
    """The full tiny Shakespeare where tinyllm would look for it (TINYLLM_DATA_DIR, then the cache)."""
    folders = [Path(os.environ["TINYLLM_DATA_DIR"])] if os.environ.get("TINYLLM_DATA_DIR") else []
    for folder in [*folders, cache_dir()]:
        if (folder / TINY_SHAKESPEARE.relative_path).is_file():
            return (folder / TINY_SHAKESPEARE.relative_path).resolve()
    return None


FULL_CORPUS = _full_corpus()
if FULL_CORPUS is not None:  # absolute, so that subprocesses started in other folders find it too
    os.environ["TINYLLM_DATA_DIR"] = str(FULL_CORPUS.parents[1])
else:  # nothing to find: a test that reached for the corpus fails at once instead of downloading
    os.environ["TINYLLM_DATA_DIR"] = str(Path(__file__).resolve().parent / "data" / "no-full-corpus")

if os.environ.get("PYTEST_XDIST_WORKER"):  # several test processes share the cores: one thread each
    os.environ["OMP_NUM_THREADS"] = "1"  # and in the subprocesses they start
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, torch.get_num_threads()))
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # compile in this process: no pool of workers

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
    "--data",
    SHAKESPEARE_EXCERPT,
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
    """The full corpus, for the tests that need exactly it; skipped where there is none."""
    if FULL_CORPUS is None:
        pytest.skip("the full tiny Shakespeare is not here: set TINYLLM_DATA_DIR (e.g. ../shared/data) to run this")
    return FULL_CORPUS


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
        data_path=SHAKESPEARE_EXCERPT,
        progress_bar=False,
        log=lambda *a: None,
    )
    return out
