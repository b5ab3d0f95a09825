"""Tokens per second of the decode loop against the number of generations it steps together.

    python benchmarks/batch_decode.py runs/shakespeare [--batches 1,2,4,...] [--tokens 200] [--plot FILE]

In this process, no server: `DecodeLoop` (batching.py) with B generations of `--tokens` tokens each
(prompts of 5 to 19 characters, so that the rows sit at different lengths; temperature 0.8, a seed
each; all admitted at once), for each B, beside one generation decoded
directly (`run.complete`). Three rounds, the contenders alternated; each figure is the median. Prints
one JSON object (tokens/s in all, per generation, and the time of one step); --plot draws tokens/s
against B (the picture of lesson 15).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name, report, run_main  # noqa: E402

import tinyllm  # noqa: E402
from tinyllm.batching import DecodeLoop, Generation  # noqa: E402
from tinyllm.sampling import SamplingParams  # noqa: E402

PROMPT = "to be, or not to be"


def batched(run: tinyllm.Run, batch: int, tokens: int) -> float:
    loop = DecodeLoop(run.model, max_batch=batch)
    for seed in range(batch):  # prompts of 5 to 19 characters: the rows sit at different lengths, as a class's do
        ids = run.task.encode_prompt(PROMPT[: 5 + seed % 15])
        loop.submit(Generation(ids, tokens, SamplingParams(temperature=0.8), torch.Generator().manual_seed(seed)))
    t0 = time.perf_counter()
    loop.run_until_done()
    return batch * tokens / (time.perf_counter() - t0)


def direct(run: tinyllm.Run, tokens: int) -> float:
    t0 = time.perf_counter()
    run.complete(PROMPT, tokens, seed=0, temperature=0.8)
    return tokens / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--batches", default="1,2,4,8,16,32,64,128,256")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    run = tinyllm.load(args.run)
    sizes = [int(b) for b in args.batches.split(",")]
    batched(run, 4, 20)  # warm up
    rates: dict[str, list[float]] = {"direct": []}
    for _ in range(args.rounds):
        for b in sizes:
            rates["direct"].append(direct(run, args.tokens))
            rates.setdefault(str(b), []).append(batched(run, b, args.tokens))
    one = statistics.median(rates["direct"])
    result = {
        "benchmark": "batch_decode",
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "date": date.today().isoformat(),
        "run": str(args.run),
        "params": run.model.num_params(),
        "tokens_per_generation": args.tokens,
        "direct_tokens_per_s": round(one, 1),
        "batches": [
            {
                "batch": b,
                "tokens_per_s": round(statistics.median(rates[str(b)]), 1),
                "per_generation": round(statistics.median(rates[str(b)]) / b, 1),
                "step_ms": round(1000 * b / statistics.median(rates[str(b)]), 3),
                "vs_direct": round(statistics.median(rates[str(b)]) / one, 2),
            }
            for b in sizes
        ],
    }
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        ax.plot(
            sizes,
            [row["tokens_per_s"] for row in result["batches"]],
            marker="o",
            label="the decode loop, B generations",
        )
        ax.axhline(one, color="gray", linestyle="--", label="one generation decoded directly")
        ax.set(xscale="log", xlabel="generations decoded together (B)", ylabel="tokens per second, in all")
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.legend(fontsize=8)
        ax.set_title(f"{run.model.num_params() / 1e6:.2f}M-parameter Shakespeare model, 2-core CPU", fontsize=9)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
    report(result, args.out)


if __name__ == "__main__":
    run_main(main)
