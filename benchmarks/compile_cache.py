"""Is `tinyllm train --compile` worth it? Eager against torch.compile with a cold and a warm cache.

    TINYLLM_DATA_DIR=../shared/data python benchmarks/compile_cache.py [--steps 300] [--rounds 2] [--out r.json]

Runs the Shakespeare default (cased, 3 layers, 96 wide, context 256, batch 8, Muon + WSD) as a user
runs it, `tinyllm train shakespeare --no-lowercase --max-iters N`, three ways per round:
eager; `--compile` with an empty Inductor cache (TORCHINDUCTOR_CACHE_DIR pointing at a new folder:
the first compiled run on a machine); `--compile` again with that folder now filled (every later
run). For each: the whole command's wall time, the first step's time (compilation happens there),
and the steady step time (the median after step 10). `break_even_s`: how long a run must train for
the faster steps to win back the first step's extra cost, against eager.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, report, tinyllm  # noqa: E402


def train(folder: Path, steps: int, compile_model: bool, cache: Path) -> dict:
    command = ["train", "shakespeare", "--no-lowercase", "--out", str(folder)]
    flags = [f"--max-iters={steps}", "--max-time=1h", f"--eval-interval={10 * steps}", "--no-progress", "--overwrite"]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    tinyllm(*command, *flags, *(["--compile"] if compile_model else []), env=env)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    times = [b["elapsed_s"] - a["elapsed_s"] for a, b in pairwise(records) if "test_loss" not in b]
    return {
        "command_wall_s": round(wall, 1),
        "first_step_s": round(records[0]["elapsed_s"], 2),
        "steady_step_ms": round(1000 * statistics.median(times[10:]), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2, help="each round starts from a new, empty cache")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            cache = Path(tmp) / f"inductor-cache-{i}"
            run = Path(tmp) / "run"
            measured = {
                "eager": train(run, args.steps, False, cache),
                "compile_cold": train(run, args.steps, True, cache),
                "compile_warm": train(run, args.steps, True, cache),
            }
            eager = measured["eager"]
            for name in ("compile_cold", "compile_warm"):
                m = measured[name]
                saved_per_step = (eager["steady_step_ms"] - m["steady_step_ms"]) / 1000
                extra = m["first_step_s"] - eager["first_step_s"]
                m["speedup_per_step"] = round(eager["steady_step_ms"] / m["steady_step_ms"], 3)
                # the training time after which compiling has paid for itself (None: it never does)
                m["break_even_s"] = (
                    round(extra / saved_per_step * m["steady_step_ms"] / 1000, 1) if saved_per_step > 0 else None
                )
            rounds.append(measured)
            print(json.dumps(measured), file=sys.stderr)
    result = {"cpu": cpu_name(), "steps": args.steps, "model": "shakespeare default, cased", "rounds": rounds}
    report(result, args.out)


if __name__ == "__main__":
    main()
