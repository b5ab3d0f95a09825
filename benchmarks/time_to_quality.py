"""Time to quality: how good is the model when the time is up? Recipes compared at one wall-clock budget.

    TINYLLM_DATA_DIR=../shared/data python benchmarks/time_to_quality.py --budget 5m --seeds 1 2 \
        --recipes default muon wsd muon-wsd [--lowercase] [--out results.json]

Each recipe is `tinyllm train shakespeare` (cased unless --lowercase) with a few flags changed, run
in its own process for the same `--max-time`; recipes alternate within each seed (A B C D, A B C D,
...) so that a noisy spell of the machine hits them all. Each run is then scored like the README's
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

RECIPES = {  # name -> the flags that differ from `tinyllm train shakespeare` (default: Muon + WSD)
    "default": [],
    "muon": ["--optimizer", "muon"],
    "wsd": ["--schedule", "wsd"],
    "muon-wsd": ["--optimizer", "muon", "--schedule", "wsd"],
    "adamw": ["--optimizer", "adamw", "--schedule", "cosine"],
    # the shape and rates, re-tuned around the Muon + WSD default
    "lr2e-3": ["--lr", "2e-3", "--min-lr", "2e-4"],
    "lr5e-3": ["--lr", "5e-3", "--min-lr", "5e-4"],
    "wide128": ["--n-embd", "128"],
    # narrower: each step cheaper (the products shrink with the square of the width), so more of them
    "wide64": ["--n-embd", "64"],
    "wide64-heads2": ["--n-embd", "64", "--n-head", "2"],
    "batch16": ["--batch-size", "16"],
    # 32 dimensions per head instead of 24: the same work, in products that suit the CPU's kernels better
    "heads3": ["--n-head", "3"],
    # half the batch: a step costs about 0.64x as much here, so ~1.7x the updates on ~0.83x the tokens
    "batch4": ["--batch-size", "4"],
    "batch4-lr2e-3": ["--batch-size", "4", "--lr", "2e-3", "--min-lr", "2e-4"],
    # Muon's Newton-Schulz in float32 where the default (`auto`) runs it in bfloat16 (CPUs with bfloat16
    # instructions): what the bfloat16 products buy in a whole run
    "muon-float32": ["--muon-dtype", "float32"],
    # GPT-2's fused query-key-value matrix orthogonalised as one (before the default split it in three)
    "muon-fused-qkv": [],
    # Muon's rate (the hidden matrices) at 1.5x --lr, AdamW's unchanged: a lever (on top of the default's
    # own scale), and the default's rate of before (1x)
    "muon-lr-x1.5": [],
    "muon-lr-scale-1": ["--muon-lr-scale", "1"],
    "muon-fused-qkv-lr-scale-1": ["--muon-lr-scale", "1"],  # both as before: the old default
    "muon-quintic-rows-off": [],  # Muon's step before Polar Express and NorMuon (PyTorch's, split)
    # more weight decay: by the end of 5 minutes a fast CPU has shown the model its text about 8 times
    "wd0.3": ["--weight-decay", "0.3"],
    "wd0": ["--weight-decay", "0"],
    # NorMuon's row sizes averaged over 0.9 instead of 0.95: best with both seeds at 1,500 steps (README)
    "muon-rows-beta-0.9": [],
    "gelu-pytorch": [],  # PyTorch's tanh-GELU kernel, not tinyllm.gelu's sigmoid form: the same maths, slower
    # the weights averaged over the final decay: --ema-decay 0.98 won here first, then 0.995 (the default now;
    # averaging.py caps the average's span at a quarter of the decay's steps)
    "no-ema": ["--ema-decay", "0"],
    "ema-0.98": ["--ema-decay", "0.98"],
    "ema-0.99": ["--ema-decay", "0.99"],  # longer averages: the decay is ~850 steps long in 5 minutes
    "ema-0.995": ["--ema-decay", "0.995"],
    # longer than the cap allows: the average spans a quarter of the decay's steps (~210 of ~850 here)
    "ema-0.999": ["--ema-decay", "0.999"],
    # a longer decay: the average (a quarter of the decay at most) gets more, and more settled, steps
    "decay0.3": ["--decay-fraction", "0.3"],
    # half the batch for the first 30% / 50% of the time, then the whole (a lever: fixed_steps.py);
    # it lost, with and without the averaging, which was a lever too when they ran
    "half-batch-first-0.3": ["--ema-decay", "0"],
    "half-batch-first-0.5": ["--ema-decay", "0"],
    "ema-0.98-half-batch-first-0.3": ["--ema-decay", "0.98"],
}
LEVERS = {
    "muon-fused-qkv": ["muon-fused-qkv"],
    "muon-fused-qkv-lr-scale-1": ["muon-fused-qkv"],
    "muon-lr-x1.5": ["muon-lr-x1.5"],
    "muon-quintic-rows-off": ["muon-quintic", "muon-rows-off"],
    "gelu-pytorch": ["gelu-pytorch"],
    "muon-rows-beta-0.9": ["muon-rows-beta-0.9"],
    "half-batch-first-0.3": ["half-batch-first-0.3"],
    "half-batch-first-0.5": ["half-batch-first-0.5"],
    "ema-0.98-half-batch-first-0.3": ["half-batch-first-0.3"],
}  # recipes with a lever that has no flag: see fixed_steps.py
SCORED_SEQUENCES = 800  # each run is scored on this many test sequences: 100 batches of the default's 8


def run_recipe(name: str, flags: list[str], seed: int, budget: str, lowercase: bool, folder: Path) -> dict:
    out = folder / f"{name}-seed{seed}"
    case = [] if lowercase else ["--no-lowercase"]
    command = ["train", "shakespeare", "--out", str(out), "--max-time", budget]
    arguments = [*command, *case, *flags, "--seed", str(seed), "--no-progress", "--overwrite"]
    tinyllm(*arguments, levers=LEVERS.get(name, ()))
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--lowercase", action="store_true", help="lowercase text (default: cased, as nanoGPT)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    def run(name: str, seed: int, folder: Path) -> dict:
        return run_recipe(name, RECIPES[name], seed, args.budget, args.lowercase, folder)

    runs = alternate(args.seeds, args.recipes, run)
    result = {"cpu": cpu_name(), "budget": args.budget, "cased": not args.lowercase, "runs": runs}
    report(result, args.out)


if __name__ == "__main__":
    main()
