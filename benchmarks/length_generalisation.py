"""Addition beyond the trained lengths: learned positions against abacus positions, over seeds.

    python benchmarks/length_generalisation.py --seeds 1 2 3 [--schemes learned abacus] \
        [--lengths 1-30] [--out results.json] [--plot docs/addition_accuracy_by_length.png]

Each run is the default `tinyllm train addition` (learned positions, 3 minutes) or
`tinyllm train addition --positions abacus` (its own defaults, at most 10 minutes with the final
evaluation), in its own process, alternating schemes within each seed; then `tinyllm eval RUN --json`
(random test set and edge set) and `tinyllm eval RUN --lengths 1-30 --json` (200 problems per
length). Prints one JSON object: the CPU, and per run the parameter count, steps, wall time, the
test and edge accuracy, and the accuracy at each length ("refused" where the run cannot read it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import alternate, cpu_name, report, tinyllm  # noqa: E402

SCHEMES = {"learned": [], "abacus": ["--positions", "abacus"]}


def run_scheme(scheme: str, seed: int, lengths: str, folder: Path) -> dict:
    out = folder / f"{scheme}-seed{seed}"
    start = time.perf_counter()
    tinyllm(
        "train", "addition", *SCHEMES[scheme], "--out", str(out), "--seed", str(seed), "--no-progress", "--overwrite"
    )
    wall = time.perf_counter() - start
    evaluated = json.loads(tinyllm("eval", str(out), "--json"))
    by_length = json.loads(tinyllm("eval", str(out), "--lengths", lengths, "--json"))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    import tinyllm as lib

    return {
        "scheme": scheme,
        "seed": seed,
        "parameters": lib.load(out).model.num_params(),
        "steps": records[-1]["iter"],
        "train_seconds": round(records[-1]["elapsed_s"], 1),
        "wall_seconds_with_final_eval": round(wall, 1),
        "test_accuracy": evaluated["accuracy"],
        "edge_accuracy": evaluated["edge_accuracy"],
        "edge_wrong": evaluated["edge_wrong"],
        "accuracy_by_length": by_length["accuracy"],
    }


def mean_by_length(runs: list[dict]) -> dict[int, float | None]:
    """Mean accuracy per length over runs (None where the scheme refuses the length)."""
    lengths = runs[0]["accuracy_by_length"]
    result: dict[int, float | None] = {}
    for n in lengths:
        values = [r["accuracy_by_length"][n] for r in runs]
        result[int(n)] = None if "refused" in values else statistics.mean(values)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    parser.add_argument("--lengths", default="1-30")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--plot", type=Path, help="draw the mean accuracy by length of each scheme here")
    args = parser.parse_args()
    runs = alternate(
        args.seeds, args.schemes, lambda scheme, seed, folder: run_scheme(scheme, seed, args.lengths, folder)
    )
    result = {"cpu": cpu_name(), "seeds": args.seeds, "lengths": args.lengths, "runs": runs}
    report(result, args.out)
    if args.plot:
        from tinyllm.plots import plot_accuracy_by_length

        curves = {
            f"{scheme} positions (mean of {len(args.seeds)} seeds)": mean_by_length(
                [r for r in runs if r["scheme"] == scheme]
            )
            for scheme in args.schemes
        }
        plot_accuracy_by_length(args.plot, curves, trained=10, title="addition: trained on 1-10 digits")


if __name__ == "__main__":
    main()
