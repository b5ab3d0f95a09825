"""What an evaluation costs the training budget: the evaluation with its checkpoint, and the plots.

    TINYLLM_DATA_DIR=../shared/data python benchmarks/eval_overhead.py [--seconds 90] [--out results.json]

Trains the cased Shakespeare model for `--seconds`, evaluating every 50 steps and redrawing the
plots at most every 15 s (so that some evaluations draw and some do not). The step after an
evaluation carries its cost in metrics.jsonl's `elapsed_s`; its excess over the median step is the
cost of that evaluation (+ checkpoint), with or without a drawing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import tinyllm.runs as runs
from tinyllm.plots import read_metrics

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="training time")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    drawn_at: list[int] = []  # the iteration of every drawing
    plot_run = runs.plot_run

    def counted_plot_run(path, title=""):
        drawn_at.append(read_metrics(Path(path) / "metrics.jsonl")[-1]["iter"])
        return plot_run(path, title=title)

    runs.plot_run, runs.PLOT_EVERY_S = counted_plot_run, 15.0
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        overrides = {"max_time": args.seconds, "eval_interval": 50}
        runs.train(
            "shakespeare", out_dir=out, task_options={"lowercase": False}, train_overrides=overrides, progress_bar=False
        )
        records = read_metrics(out / "metrics.jsonl")
    elapsed = {r["iter"]: r["elapsed_s"] for r in records}
    step_s = {i: elapsed[i] - elapsed.get(i - 1, 0.0) for i in elapsed}
    median = statistics.median(step_s.values())
    evaluated = [r["iter"] for r in records if "test_loss" in r][:-1]  # the last has no step after it
    excess = {i: step_s[i + 1] - median for i in evaluated}
    with_plots = [excess[i] for i in evaluated if i in drawn_at]
    without = [excess[i] for i in evaluated if i not in drawn_at]
    result = {
        "cpu": cpu_name(),
        "median_step_s": round(median, 4),
        "evaluations": len(evaluated),
        "evaluation_and_checkpoint_s": round(statistics.median(without), 3),
        "plots_s": round(statistics.median(with_plots) - statistics.median(without), 3),
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
