"""Plot one metric of several runs on one figure, e.g. the addition model with both losses:

python examples/compare_runs.py accuracy runs/addition runs/addition-full --out docs/addition_accuracy.png
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tinyllm.plots import read_metrics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metric", help="a key of metrics.jsonl, e.g. accuracy or test_loss")
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--x", default="elapsed_s", choices=("elapsed_s", "iter"), help="horizontal axis")
    args = parser.parse_args()

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for run in args.runs:
        points = [(r[args.x], r[args.metric]) for r in read_metrics(run / "metrics.jsonl") if args.metric in r]
        ax.plot(*zip(*points, strict=True), "o-", ms=3, label=run.name)
    ax.set_xlabel("seconds of training" if args.x == "elapsed_s" else "iteration")
    ax.set_ylabel(args.metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
