"""The cost of one training step of the Shakespeare model, for several head counts, alternated.

    TINYLLM_DATA_DIR=../shared/data python benchmarks/step_time.py --heads 4 3 2 [--rounds 6] [--out results.json]

The same work in every case (3 blocks, 96 wide, context 256, batch 8, Muon, cased): the heads only
cut the 96 dimensions into 4 x 24, 3 x 32 or 2 x 48, so the attention products have another shape.
Every model is built and warmed up first; then rounds of `--steps` steps each, one model after the
other, so that a slow spell of the machine hits them all. Prints the median milliseconds per step.
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
from common import cpu_name, report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, nargs="+", default=[4, 3, 2])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20, help="steps per round and model")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    task = get_task("shakespeare")(lowercase=False)
    task.prepare(None)
    trainers = {}
    for heads in args.heads:
        torch.manual_seed(0)
        shape = GPTConfig(n_layer=3, n_head=heads, n_embd=96, block_size=256, vocab_size=task.tokenizer.vocab_size)
        config = TrainConfig(batch_size=8, optimizer="muon", schedule="wsd", max_iters=10**9, max_time=None)
        trainer = Trainer(task.build_model(shape), lambda split, g: task.get_batch(split, 8, 256, g), config)
        for _ in range(5):  # warm-up: the first steps allocate
            trainer.step()
        trainers[heads] = trainer
    ms: dict[int, list[float]] = {heads: [] for heads in trainers}
    for _ in range(args.rounds):
        for heads, trainer in trainers.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer.step()
            ms[heads].append((time.perf_counter() - start) / args.steps * 1000)
    result = {
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "ms_per_step": {f"{h} heads ({96 // h} dims)": round(statistics.median(v), 1) for h, v in ms.items()},
        "rounds_ms": {f"{h} heads": [round(x, 1) for x in v] for h, v in ms.items()},
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
