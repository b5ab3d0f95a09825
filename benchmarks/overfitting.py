"""The seed's overfitting lesson: train on a small part of Shakespeare until train and test loss part.

    TINYLLM_DATA_DIR=../shared/data python benchmarks/overfitting.py --train-fraction 0.05 --budget 3m \
        [--out results.json] [--plot docs/shakespeare_overfitting.png]

Each recipe is `tinyllm train shakespeare --no-lowercase --train-fraction F` (the test split is the
usual last 10%) with one thing changed, evaluated every 50 steps. For each run the JSON gives the
epoch (passes over its training text) at which the test loss was lowest -- where the curves part --
the loss there, and the train and test loss at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, report, tinyllm  # noqa: E402

RECIPES = {  # name -> the flags that differ from the default recipe
    "default (Muon, WSD, weight decay 0.1)": [],
    "cosine schedule": ["--schedule", "cosine"],
    "weight decay 1.0": ["--weight-decay", "1.0"],
}


def run(name: str, flags: list[str], fraction: float, budget: str, folder: Path) -> dict:
    out = folder / name.split()[0].strip("()")
    command = ["train", "shakespeare", "--no-lowercase", "--out", str(out)]
    options = ["--train-fraction", str(fraction), "--max-time", budget, "--eval-interval", "50", "--no-progress"]
    tinyllm(*command, *options, *flags, "--overwrite")
    evals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "test_loss" in r]
    best = min(evals, key=lambda r: r["test_loss"])
    return {
        "recipe": name,
        "flags": flags,
        "steps": evals[-1]["iter"],
        "epochs": evals[-1]["epoch"],
        "best_test_loss": round(best["test_loss"], 4),
        "epoch_of_best_test_loss": best["epoch"],
        "final_train_loss": round(evals[-1]["eval_train_loss"], 4),
        "final_test_loss": round(evals[-1]["test_loss"], 4),
        "curve": [(r["epoch"], round(r["eval_train_loss"], 4), round(r["test_loss"], 4)) for r in evals],
    }


def plot(path: Path, runs: list[dict], fraction: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for r in runs:
        epochs, train, test = zip(*r["curve"], strict=True)
        line = ax.plot(epochs, test, "-", label=f"{r['recipe']}: test")[0]
        ax.plot(epochs, train, "--", color=line.get_color(), alpha=0.7, label=f"{r['recipe']}: train")
    ax.set_title(f"cased Shakespeare, trained on the first {fraction:.0%} of the training text")
    ax.set_xlabel("epoch (passes over the training text)")
    ax.set_ylabel("cross-entropy loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-fraction", type=float, default=0.05)
    parser.add_argument("--budget", default="3m")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        runs = [run(name, flags, args.train_fraction, args.budget, Path(folder)) for name, flags in RECIPES.items()]
    result = {"cpu": cpu_name(), "train_fraction": args.train_fraction, "budget": args.budget, "runs": runs}
    report(result, args.out)
    if args.plot:
        plot(args.plot, runs, args.train_fraction)


if __name__ == "__main__":
    main()
