"""Where a training step's time goes: PyTorch's profiler over tinyllm's own `Trainer.step`.

    python benchmarks/step_profile.py [--shape baby|shakespeare] [--optimizer adamw|muon] [--steps 30]

`baby` is nanoGPT's CPU recipe (4 layers, 4 heads, 128 wide, context 64, batch 12, no biases), the
shape of `vs_nanogpt.py`; `shakespeare` is the Shakespeare default (3 layers, 96 wide, context 256,
batch 8). The step is the one `tinyllm train` takes (forward, loss, backward, clipping, the
optimizers, the schedule), on random tokens: the kernels do not care what the tokens say. Prints
JSON: the mean step time outside the profiler, and each of the most expensive operators' share of the
profiled time (self time: an operator's own work, not its children's), the rest summed as `other`.
The process keeps its freed memory, as `tinyllm train` on a CPU does (`cpu_memory.py`).

Read the shares with care: the profiler's own cost is not spread evenly. On a Zen 4 a Shakespeare
step took 59.9 ms unprofiled and 104.1 ms profiled, and the GELU's `addcmul` got 25% of the profiled
time, where the whole GELU costs about 3 ms of a 70-ms step when timed without a profiler
(`gelu_forms.py`). Compare `profiled_step_ms` with `step_ms`, and time a suspect operator directly.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from tinyllm import GPT, GPTConfig
from tinyllm.config import TrainConfig
from tinyllm.cpu_memory import keep_freed_memory
from tinyllm.tasks.base import TaskModel
from tinyllm.training import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, report, run_main  # noqa: E402

SHAPES = {  # model, tokens per step (batch, context)
    "baby": (dict(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65, bias=False), 12),
    "shakespeare": (dict(n_layer=3, n_head=4, n_embd=96, block_size=256, vocab_size=65), 8),
}
TOP = 8  # operators named in the result; the rest go into `other`


def random_token_trainer(gpt: GPT, batch: int, optimizer: str) -> Trainer:
    """The Trainer `tinyllm train` builds for `gpt` (with the next-token loss, as every task's model),
    on batches of random tokens: the kernels do not care what the tokens say."""
    config = gpt.config

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.randint(config.vocab_size, (batch, config.block_size + 1), generator=generator)
        return tokens[:, :-1], tokens[:, 1:]

    train_config = TrainConfig(batch_size=batch, max_iters=10**6, optimizer=optimizer, device="cpu")
    return Trainer(TaskModel(gpt), get_batch, train_config, rows=batch * config.block_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=list(SHAPES), default="baby")
    parser.add_argument("--optimizer", choices=("adamw", "muon"), default="adamw")
    parser.add_argument("--steps", type=int, default=30, help="profiled steps (and twice as many timed)")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps takes a positive number")
    model_shape, batch = SHAPES[args.shape]
    keep_freed_memory()  # as `tinyllm train` on a CPU
    torch.manual_seed(0)
    trainer = random_token_trainer(GPT(GPTConfig(**model_shape)), batch, args.optimizer)
    for _ in range(10):  # warm-up: the allocator's caches, the optimizers' state
        trainer.step()
    start = time.perf_counter()
    for _ in range(2 * args.steps):
        trainer.step()
    step_ms = 1000 * (time.perf_counter() - start) / (2 * args.steps)
    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        for _ in range(args.steps):
            trainer.step()
    ops = sorted(profiled.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    shares = {e.key: round(e.self_cpu_time_total / total, 3) for e in ops[:TOP]}
    shares["other"] = round(1 - sum(shares.values()), 3)
    report(
        {
            "cpu": cpu_name(),
            "threads": torch.get_num_threads(),
            "shape": args.shape,
            "optimizer": args.optimizer,
            "step_ms": round(step_ms, 1),
            "profiled_step_ms": round(total / 1000 / args.steps, 1),  # the profiler's own cost included
            "self_time_share": shares,
        }
    )


if __name__ == "__main__":
    run_main(main)
