"""The cost of one training step of the Shakespeare model, for several head counts or batch shapes, alternated.

    TINYLLM_DATA_DIR=../shared/data python benchmarks/step_time.py --heads 4 3 2 [--rounds 6] [--out results.json]
    TINYLLM_DATA_DIR=../shared/data python benchmarks/step_time.py --heads --batches 8x256 16x128 32x64 4x256

3 blocks, 96 wide, Muon, cased. `--heads`: the same work in every case (batch 8, context 256); the
heads only cut the 96 dimensions into 4 x 24, 3 x 32 or 2 x 48, so the attention products have
another shape. `--batches BATCHxCONTEXT` (4 heads): fewer or more tokens a step, or the same tokens
in shorter sequences (what a sequence-length warm-up would buy: attention's cost grows with the
square of the context). Every variant is built and warmed up first; then rounds of `--steps` steps
each, one variant after the other, so that a slow spell of the machine hits them all. Prints the
median milliseconds per step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from tinyllm.config import TrainConfig
from tinyllm.model import GPTConfig
from tinyllm.tasks import get_task
from tinyllm.training import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, report, run_main  # noqa: E402


def build_trainer(task, heads: int, batch: int, context: int) -> Trainer:
    """A warmed-up Trainer of the Shakespeare shape with this many heads, on batches of this shape."""
    torch.manual_seed(0)
    shape = GPTConfig(n_layer=3, n_head=heads, n_embd=96, block_size=256, vocab_size=task.tokenizer.vocab_size)
    config = TrainConfig(batch_size=batch, optimizer="muon", schedule="wsd", max_iters=10**9, max_time=None)
    trainer = Trainer(task.build_model(shape), lambda split, g: task.get_batch(split, batch, context, g), config)
    for _ in range(5):  # warm-up: the first steps allocate
        trainer.step()
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, nargs="*", default=[4, 3, 2], help="head counts (batch 8, context 256)")
    parser.add_argument("--batches", nargs="*", default=[], help="BATCHxCONTEXT shapes, 4 heads (e.g. 8x256 4x256)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20, help="steps per round and model")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    variants = {f"{h} heads ({96 // h} dims)": (h, 8, 256) for h in args.heads}
    for shape in args.batches:
        batch, _, context = shape.partition("x")
        if not (batch.isdigit() and context.isdigit() and 0 < int(context) <= 256 and int(batch) > 0):
            parser.error(
                f"--batches: expected BATCHxCONTEXT with a context of at most 256, such as 8x256; got {shape!r}"
            )
        variants[f"batch {batch} x context {context}"] = (4, int(batch), int(context))
    task = get_task("shakespeare")(lowercase=False)
    task.prepare(None)
    trainers = {name: build_trainer(task, *variant) for name, variant in variants.items()}
    ms: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer.step()
            ms[name].append((time.perf_counter() - start) / args.steps * 1000)
    result = {
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "ms_per_step": {name: round(statistics.median(v), 1) for name, v in ms.items()},
        "rounds_ms": {name: [round(x, 1) for x in v] for name, v in ms.items()},
    }
    report(result, args.out)


if __name__ == "__main__":
    run_main(main)
