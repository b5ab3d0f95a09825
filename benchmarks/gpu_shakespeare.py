"""nanoGPT's GPU recipe for character Shakespeare, and tinyllm's: the training time to a validation loss of 1.47.

    TINYLLM_DATA_DIR=data python benchmarks/gpu_shakespeare.py --device cuda --dtype bfloat16 --compile \
        [--recipes nanogpt muon-wsd-2000] [--nanogpt /path/to/nanoGPT] [--target 1.47] [--out results.json]

The shape of nanoGPT's `config/train_shakespeare_char.py`: 6 layers, 6 heads, 384 wide, context 256,
batch 64, no biases, cased text, the first 90% for training (nanoGPT's split and tinyllm's). Each
recipe is `tinyllm train shakespeare` with that shape and its own optimizer, schedule, dropout and
number of steps (the schedule is fitted to the steps, so that compilation and evaluations do not use
up the schedule), evaluated like nanoGPT: every 250 steps on 200 batches of each split.

The time to the target is the training time at the first evaluation at or below it: the sum of the
steps' own times (from metrics.jsonl, tokens / tokens_per_s), with the first step -- which holds the
compilation -- counted at the median step time, and evaluations left out. With --nanogpt (a checkout
of karpathy/nanoGPT, which must travel with the job: no internet on a GPU machine), nanoGPT's own
`train.py` runs its recipe as its README gives it, and its log gives the same figure: its iteration
times summed, iteration 0 and every evaluating iteration counted at the median. Each run's wall
clock (compilation, evaluations and checkpoints included) is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, report, run_main, run_quietly, tinyllm  # noqa: E402
from vs_nanogpt import nanogpt_data  # noqa: E402

BATCH, BLOCK = 64, 256
SHAPE = ["--n-layer=6", "--n-head=6", "--n-embd=384", f"--block-size={BLOCK}", f"--batch-size={BATCH}", "--no-bias"]
NANOGPT_FLAGS = ["--optimizer=adamw", "--schedule=cosine", "--lr=1e-3", "--min-lr=1e-4", "--warmup-iters=100"]
MUON_WSD = ["--optimizer=muon", "--schedule=wsd", "--lr=3e-3", "--min-lr=3e-4"]  # tinyllm's default recipe
RECIPES = {  # name -> (flags of `tinyllm train shakespeare` besides the shape, optimizer steps)
    # nanoGPT's recipe run by tinyllm: AdamW, beta2 0.99, cosine over 5,000 steps, dropout 0.2
    "nanogpt": ([*NANOGPT_FLAGS, "--beta2=0.99", "--dropout=0.2"], 5000),
    "muon-wsd-3000": ([*MUON_WSD, "--dropout=0.2"], 3000),
    "muon-wsd-2000": ([*MUON_WSD, "--dropout=0.2"], 2000),
    "muon-wsd-2000-nodrop": ([*MUON_WSD, "--dropout=0"], 2000),
    "muon-wsd-1500": ([*MUON_WSD, "--dropout=0.2"], 1500),
}


def time_to_target(evals: list[tuple[int, float]], step_s: dict[int, float], target: float) -> dict:
    """The first evaluation (iteration, loss) at or below `target`, and the training time up to it."""
    for it, loss in evals:
        if loss <= target:
            return {"reached_at_iter": it, "training_s": round(sum(s for i, s in step_s.items() if i <= it), 1)}
    return {"reached_at_iter": None, "training_s": None}


def steadied(step_s: dict[int, float], unsteady: set[int]) -> dict[int, float]:
    """Step times with the unsteady ones (compilation, evaluations) replaced by the median step."""
    median = statistics.median(s for i, s in step_s.items() if i not in unsteady)
    return {i: median if i in unsteady else s for i, s in step_s.items()}


def run_tinyllm(name: str, folder: Path, args: argparse.Namespace, device: list[str]) -> dict:
    flags, steps = RECIPES[name]
    steps = args.steps or steps
    out = folder / name
    evaluation = [f"--eval-interval={args.eval_interval}", f"--eval-iters={args.eval_iters}"]
    command = ["train", "shakespeare", "--no-lowercase", *SHAPE, *evaluation, *flags, *device]
    started = time.perf_counter()
    tinyllm(*command, f"--max-iters={steps}", "--max-time=1h", "--no-progress", "--overwrite", "--out", str(out))
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    step_s = {r["iter"]: BATCH * BLOCK / r["tokens_per_s"] for r in records if "tokens_per_s" in r}
    evals = [(r["iter"], r["test_loss"]) for r in records if "test_loss" in r]
    return {
        "recipe": name,
        "flags": flags,
        "steps": steps,
        **time_to_target(evals, steadied(step_s, {min(step_s)}), args.target),
        "best_val_loss": round(min(loss for _, loss in evals), 4),
        "final_val_loss": round(evals[-1][1], 4),
        "median_step_ms": round(1000 * statistics.median(step_s.values()), 2),
        "command_wall_s": round(wall, 1),
        "evals": [(it, round(loss, 4)) for it, loss in evals],
    }


def run_nanogpt(checkout: Path, folder: Path, args: argparse.Namespace) -> dict:
    flags = [f"--device={args.device}", f"--dtype={args.dtype}", f"--compile={args.compile}", "--log_interval=1",
             f"--eval_interval={args.eval_interval}", f"--eval_iters={args.eval_iters}",
             f"--out_dir={folder / 'out-nanogpt'}"]  # fmt: skip
    if args.steps:  # its recipe runs 5,000 steps
        flags += [f"--max_iters={args.steps}", f"--lr_decay_iters={args.steps}"]
    started = time.perf_counter()
    log = run_quietly([sys.executable, "train.py", "config/train_shakespeare_char.py", *flags], cwd=checkout)
    wall = time.perf_counter() - started
    evals = [(int(i), float(v)) for i, v in re.findall(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)", log)]
    step_s = {int(i): float(ms) / 1000 for i, ms in re.findall(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", log)}
    evaluating = {0} | {it for it, _ in evals}  # iteration 0 also holds the compilation
    return {
        "recipe": "nanoGPT's own train.py",
        "flags": flags,
        "steps": max(step_s),
        **time_to_target(evals, steadied(step_s, evaluating), args.target),
        "best_val_loss": min(loss for _, loss in evals),
        "final_val_loss": evals[-1][1],
        "median_step_ms": round(1000 * statistics.median(step_s.values()), 2),
        "command_wall_s": round(wall, 1),
        "evals": evals,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--compile", action="store_true", help="torch.compile (both programs)")
    parser.add_argument("--recipes", nargs="*", default=["nanogpt", "muon-wsd-2000"], choices=list(RECIPES))
    parser.add_argument("--target", type=float, default=1.47, help="validation loss to reach")
    parser.add_argument("--nanogpt", type=Path, help="a checkout of karpathy/nanoGPT: also run its own train.py")
    parser.add_argument("--steps", type=int, help="every run this many steps (default: each recipe's own)")
    parser.add_argument("--eval-interval", type=int, default=250, help="steps between evaluations (nanoGPT's 250)")
    parser.add_argument("--eval-iters", type=int, default=200, help="batches per evaluation (nanoGPT's 200)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if args.nanogpt and not (args.nanogpt / "train.py").is_file():
        sys.exit(f"error: {args.nanogpt} has no train.py (want a checkout of karpathy/nanoGPT)")
    device = [f"--device={args.device}", *([f"--dtype={args.dtype}"] if args.dtype != "float32" else [])]
    device += ["--compile"] if args.compile else []
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.recipes:
            runs.append(run_tinyllm(name, Path(tmp), args, device))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "evals"}), file=sys.stderr)
        if args.nanogpt:
            from tinyllm.data import TINY_SHAKESPEARE, find_corpus, read_text

            checkout = Path(tmp) / "nanoGPT"
            shutil.copytree(args.nanogpt, checkout, ignore=shutil.ignore_patterns(".git", "out-*"))
            nanogpt_data(checkout / "data" / "shakespeare_char", read_text(find_corpus(TINY_SHAKESPEARE, None)))
            runs.append(run_nanogpt(checkout, Path(tmp), args))
    result = {"machine": device_name(args.device), "target_val_loss": args.target, "runs": runs}
    report(result, args.out)


def device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else cpu_name()


if __name__ == "__main__":
    run_main(main)
