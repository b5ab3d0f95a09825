"""What keeping freed memory for the next step (`tinyllm/cpu_memory.py`) buys a CPU training step.

    python benchmarks/malloc_reuse.py [--rounds 4] [--steps 40] [--out results.json]

Each measurement is a fresh process (malloc's settings are per process) that builds the Trainer of
`tinyllm train` at one shape, takes 10 warm-up steps, then times `--steps` steps and counts the page
faults they cause (`ru_minflt`). `kept` is what training does (glibc told to keep freed blocks);
`glibc default` undoes it. Rounds alternate the two so that a slow spell of the machine hits both.
Shapes: `baby` (nanoGPT's CPU recipe: 4 layers, 128 wide, 12 x 64 tokens, AdamW, no biases) and
`shakespeare` (the default: 3 layers, 96 wide, 8 x 256 tokens, Muon). Random tokens: the kernels do
not care what they say. Prints JSON: medians of milliseconds and page faults per step, the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, report  # noqa: E402

SHAPES = {  # model, batch, optimizer
    "baby": (dict(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65, bias=False), 12, "adamw"),
    "shakespeare": (dict(n_layer=3, n_head=4, n_embd=96, block_size=256, vocab_size=65), 8, "muon"),
}

WORKER = r"""
import json, resource, sys, time
import torch
import tinyllm.runtime
from tinyllm import GPT, GPTConfig
from tinyllm.config import TrainConfig
from tinyllm.tasks.base import TaskModel
from tinyllm.training import Trainer

model_shape, batch, optimizer, mode, steps = json.loads(sys.argv[1])
if mode == "glibc default":
    tinyllm.runtime.keep_freed_memory = lambda: False
torch.manual_seed(0)
config = GPTConfig(**model_shape)

def get_batch(split, generator):
    tokens = torch.randint(config.vocab_size, (batch, config.block_size + 1), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]

train = TrainConfig(batch_size=batch, max_iters=10**6, optimizer=optimizer, device="cpu")
trainer = Trainer(TaskModel(GPT(config)), get_batch, train, rows=batch * config.block_size)
for _ in range(10):
    trainer.step()
faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
for _ in range(steps):
    trainer.step()
print(json.dumps({"ms": 1000 * (time.perf_counter() - start) / steps,
                  "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps}))
"""
MODES = ("kept", "glibc default")


def measure(shape: str, mode: str, steps: int) -> dict:
    model_shape, batch, optimizer = SHAPES[shape]
    arg = json.dumps([model_shape, batch, optimizer, mode, steps])
    done = subprocess.run([sys.executable, "-c", WORKER, arg], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps take positive numbers")
    results = {}
    for shape in args.shapes:
        runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                runs[mode].append(measure(shape, mode, args.steps))
                print(shape, mode, json.dumps(runs[mode][-1]), file=sys.stderr)
        ms = {mode: statistics.median(r["ms"] for r in runs[mode]) for mode in MODES}
        results[shape] = {
            "ms_per_step": {mode: round(ms[mode], 1) for mode in MODES},
            "page_faults_per_step": {mode: round(statistics.median(r["faults"] for r in runs[mode])) for mode in MODES},
            "ms_by_round": {mode: [round(r["ms"], 1) for r in runs[mode]] for mode in MODES},
            "speedup": round(ms["glibc default"] / ms["kept"], 3),
        }
    report({"cpu": cpu_name(), "steps": args.steps, "rounds": args.rounds, "shapes": results}, args.out)


if __name__ == "__main__":
    main()
