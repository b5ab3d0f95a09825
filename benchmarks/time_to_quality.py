"""Time to quality: how good is the model when the time is up? Recipes compared at one wall-clock budget.

    TINYLLM_DATA_DIR=../shared/data python benchmarks/time_to_quality.py --budget 5m --seeds 1337 2 \
        --recipes default adamw [--lowercase] [--out results.json]
    TINYLLM_DATA_DIR=../shared/data python benchmarks/time_to_quality.py --steps 1500 --seeds 1 2 \
        --recipes default no-ema          # learning per step, without the clock

With `--steps N` every run gets N optimizer steps instead (the schedule fitted to them), so a
change that leaves a step's cost alone is judged without the machine's noise: a CPU run with one
seed repeats to the digit. Only the winners then need the slow time-budget runs.

Each recipe is `tinyllm train shakespeare` (cased unless --lowercase) with a few flags changed, run
in its own process for the same `--max-time`; recipes alternate within each seed (A B C D, A B C D,
...) so that a noisy spell of the machine hits them all. Each run is then scored like docs/results.md's
figures, by `tinyllm eval RUN --json`: 100 batches at the default's batch of 8, and as many test
sequences (800) at any other batch size. Prints one JSON object: the CPU, and per run the
final and best test loss, the final train loss (on as many training sequences: the gap between the
two is the overfitting), steps and tokens trained.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import alternate, cpu_name, report, tinyllm  # noqa: E402

RECIPES = {  # name -> the flags that differ from `tinyllm train shakespeare` (the default: Muon + WSD)
    "default": [],
    "adamw": ["--optimizer", "adamw", "--schedule", "cosine"],  # the first default, and nanoGPT's optimizer
    "muon-cosine": ["--schedule", "cosine"],
    "adamw-wsd": ["--optimizer", "adamw"],
    # the rates and the shape, re-tuned around the default
    "lr2e-3": ["--lr", "2e-3", "--min-lr", "2e-4"],
    "lr5e-3": ["--lr", "5e-3", "--min-lr", "5e-4"],
    "wide128": ["--n-embd", "128"],
    "wide64": ["--n-embd", "64"],  # narrower: each step cheaper, so more of them
    "heads3": ["--n-head", "3"],  # 32 dimensions per head instead of 24
    "batch4": ["--batch-size", "4"],
    "batch16": ["--batch-size", "16"],
    "muon-lr-scale-1": ["--muon-lr-scale", "1"],  # Muon's rate as --lr (the default: 1.5x)
    "muon-float32": ["--muon-dtype", "float32"],  # where `auto` picks bfloat16 (CPUs with bfloat16 instructions)
    "wd0": ["--weight-decay", "0"],
    "wd0.3": ["--weight-decay", "0.3"],
    # the weights' average over the final decay (the default: 0.995, capped at a quarter of the decay)
    "no-ema": ["--ema-decay", "0"],
    "ema-0.98": ["--ema-decay", "0.98"],
    "decay0.3": ["--decay-fraction", "0.3"],
}
SCORED_SEQUENCES = 800  # each run is scored on this many test sequences: 100 batches of the default's 8


def run_recipe(name: str, flags: list[str], seed: int, budget: list[str], lowercase: bool, folder: Path) -> dict:
    out = folder / f"{name}-seed{seed}"
    case = [] if lowercase else ["--no-lowercase"]
    command = ["train", "shakespeare", "--out", str(out), *budget]
    arguments = [*command, *case, *flags, "--seed", str(seed), "--no-progress", "--overwrite"]
    tinyllm(*arguments)
    config = json.loads((out / "config.json").read_text())
    # `tinyllm eval` draws batches of the run's own size: score every run on as many sequences
    batches = max(1, SCORED_SEQUENCES // config["train"]["batch_size"])
    evaluated = json.loads(tinyllm("eval", str(out), "--json", "--batches", str(batches)))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tokens = records[-1]["iter"] * config["train"]["batch_size"] * config["model"]["block_size"]
    return {
        "recipe": name,
        "flags": flags,
        "seed": seed,
        "test_loss": round(evaluated["test_loss"], 4),
        "train_loss": round(evaluated["train_loss"], 4),  # against the test loss: is the model overfitting?
        "best_eval_test_loss": round(min(r["test_loss"] for r in records if "test_loss" in r), 4),
        "steps": records[-1]["iter"],
        "tokens": tokens,
        "seconds": records[-1]["elapsed_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="5m", help="each run's --max-time")
    parser.add_argument(
        "--steps",
        type=int,
        help="each run's --max-iters instead of a time (the schedule fitted to the steps): learning per step, "
        "without the clock; a CPU run with one seed then repeats to the digit at any machine speed",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--lowercase", action="store_true", help="lowercase text (default: cased, as nanoGPT)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    budget = ["--max-iters", str(args.steps), "--max-time", "24h"] if args.steps else ["--max-time", args.budget]

    def run(name: str, seed: int, folder: Path) -> dict:
        return run_recipe(name, RECIPES[name], seed, budget, args.lowercase, folder)

    runs = alternate(args.seeds, args.recipes, run)
    result = {"cpu": cpu_name(), "budget": args.steps or args.budget, "cased": not args.lowercase, "runs": runs}
    report(result, args.out)


if __name__ == "__main__":
    main()
