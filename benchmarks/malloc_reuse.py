"""What keeping freed memory for the next step (`tinyllm/cpu_memory.py`) buys CPU training.

    TINYLLM_DATA_DIR=../shared/data python benchmarks/malloc_reuse.py [--rounds 4] [--steps 300] [--out results.json]

Two ways, each measurement a fresh process (malloc's settings are per process):

- `trainer`: the Trainer alone in a bare process (random tokens, 10 warm-up steps, then `--steps`
  timed steps and the page faults they cause, `ru_minflt`): the mechanism, undisturbed;
- `tinyllm train`: the command as a user runs it (cased Shakespeare, no evaluation on the way):
  the mean time of the steps after the first 10 from its metrics.jsonl, and the page faults of the
  whole process (start-up, about 85,000 here, included).

`kept` is what training does (glibc told to keep freed blocks); `glibc default` undoes it. Rounds
alternate the two so that a slow spell of the machine hits both. Shapes: `baby` (nanoGPT's CPU
recipe: 4 layers, 128 wide, 12 x 64 tokens, AdamW, no biases) and `shakespeare` (the default: 3
layers, 96 wide, 8 x 256 tokens, Muon). Prints JSON: medians per mode, and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, report  # noqa: E402
from step_profile import SHAPES, random_token_trainer  # noqa: E402  (model and batch of `baby` and `shakespeare`)

OPTIMIZERS = {"baby": "adamw", "shakespeare": "muon"}  # nanoGPT's recipe; tinyllm's default
CLI_FLAGS = {
    "baby": "--no-bias --optimizer adamw --n-layer 4 --n-head 4 --n-embd 128 --block-size 64 --batch-size 12",
    "shakespeare": "",
}
MODES = ("kept", "glibc default")


def page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def trainer_worker(shape: str, steps: int) -> dict:
    """In the worker process: time `steps` Trainer steps at `shape` after 10 warm-up steps."""
    import torch

    from tinyllm import GPT, GPTConfig

    model_shape, batch = SHAPES[shape]
    torch.manual_seed(0)
    trainer = random_token_trainer(GPT(GPTConfig(**model_shape)), batch, OPTIMIZERS[shape])
    for _ in range(10):
        trainer.step()
    faults, start = page_faults(), time.perf_counter()
    for _ in range(steps):
        trainer.step()
    return {"ms": 1000 * (time.perf_counter() - start) / steps, "faults": (page_faults() - faults) / steps}


def command_worker(arguments: list[str]) -> dict:
    """In the worker process: `tinyllm ARGUMENTS`; the page faults of the whole process."""
    from tinyllm.cli import main as tinyllm

    code = tinyllm(arguments)
    if code:
        sys.exit(code)
    return {"faults": page_faults()}


def worker(mode: str, way: str, arguments: list[str]) -> None:
    """This file run as the measured process: undo `keep_freed_memory` if asked, measure, print JSON."""
    if mode == "glibc default":
        import tinyllm.runtime

        tinyllm.runtime.keep_freed_memory = lambda: False
    if way == "trainer":
        print(json.dumps(trainer_worker(arguments[0], int(arguments[1]))))
    else:
        print(json.dumps(command_worker(arguments)))


def in_fresh_process(mode: str, way: str, *arguments: str) -> dict:
    """This file's worker in a fresh Python (malloc's settings are per process); its JSON record."""
    command = [sys.executable, __file__, "--worker", mode, way, *arguments]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def measure_trainer(shape: str, mode: str, steps: int) -> dict:
    return in_fresh_process(mode, "trainer", shape, str(min(steps, 60)))


def measure_command(shape: str, mode: str, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        flags = f"--no-lowercase --max-iters {steps} --eval-interval {10 * steps} --no-progress --out {out}"
        record = in_fresh_process(mode, "command", "train", "shakespeare", *flags.split(), *CLI_FLAGS[shape].split())
        elapsed = [json.loads(line)["elapsed_s"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    steady = elapsed[10:-1]  # not the first steps (allocation) nor the last (the final evaluation)
    return {"ms": 1000 * (steady[-1] - steady[0]) / (len(steady) - 1), "faults": record["faults"]}


def main() -> None:
    if len(sys.argv) > 3 and sys.argv[1] == "--worker":  # --worker MODE WAY ARGUMENTS...
        worker(sys.argv[2], sys.argv[3], sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--steps", type=int, default=300, help="steps per `tinyllm train` run (the Trainer: 60 at most)"
    )
    parser.add_argument("--ways", nargs="+", default=["trainer", "tinyllm train"], choices=["trainer", "tinyllm train"])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps take positive numbers")
    measures = {"trainer": measure_trainer, "tinyllm train": measure_command}
    results: dict[str, dict] = {}
    for way in args.ways:
        for shape in args.shapes:
            runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
            for _ in range(args.rounds):
                for mode in MODES:
                    runs[mode].append(measures[way](shape, mode, args.steps))
                    print(way, shape, mode, json.dumps(runs[mode][-1]), file=sys.stderr)
            ms = {mode: statistics.median(r["ms"] for r in runs[mode]) for mode in MODES}
            faults = "page_faults_per_step" if way == "trainer" else "page_faults_of_the_process"
            results.setdefault(way, {})[shape] = {
                "ms_per_step": {mode: round(ms[mode], 1) for mode in MODES},
                faults: {mode: [round(r["faults"]) for r in runs[mode]] for mode in MODES},
                "ms_by_round": {mode: [round(r["ms"], 1) for r in runs[mode]] for mode in MODES},
                "speedup": round(ms["glibc default"] / ms["kept"], 3),
            }
    report({"cpu": cpu_name(), "steps": args.steps, "rounds": args.rounds, "results": results}, args.out)


if __name__ == "__main__":
    main()
