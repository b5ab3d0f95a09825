"""Training throughput: the `tinyllm train` command against nanoGPT's own `train.py`, same config.

    git clone https://github.com/karpathy/nanoGPT /path/to/nanoGPT      # (not vendored here)
    TINYLLM_DATA_DIR=../shared/data python benchmarks/vs_nanogpt.py --nanogpt /path/to/nanoGPT \
        [--rounds 3] [--steps 300] [--out results.json]

nanoGPT's documented CPU recipe ("baby GPT": 4 layers, 4 heads, 128 wide, block 64, batch 12, AdamW,
dropout 0, no torch.compile, cased character Shakespeare) run by both programs as a user runs them:
nanoGPT's `train.py` with the flags its README gives, and `tinyllm train shakespeare --no-lowercase`
with the same shape and `--optimizer adamw` (like for like: nanoGPT has no Muon). The nanoGPT folder
is copied to a temporary folder and given the same cased text as `train.bin` / `val.bin` (its
`prepare.py` downloads; here nothing can), so the checkout is left untouched.

Both sides: the steady-state wall time per optimizer step, from the programs' own logs (nanoGPT's
`time ...ms` per iteration; the differences of tinyllm's `elapsed_s` in metrics.jsonl), the mean
over the steps after the first 10, evaluation steps left out. The rounds alternate the two programs so
that the machine's noise hits both alike; the JSON gives every round and the median ratio.
nanoGPT's model has no biases by default (`bias=False`): tinyllm runs with `--no-bias` to match.
`--with tinyllm_bias` also times GPT-2's biases (tinyllm's default); `--with tinyllm_compiled` times
`tinyllm train --compile` with the compiled code already in Inductor's cache (one short run fills
it first), as it is from the second run of a shape on a machine. `--models` also times the two
models alone in this process (forward, cross-entropy and backward; and the two GELUs).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import statistics
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, report, run_main, run_quietly, tinyllm  # noqa: E402

SHAPE = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12)
VOCAB = 65  # the characters of cased tiny Shakespeare
WARMUP_STEPS = 10  # the first steps allocate and warm the caches: not steady state


def nanogpt_data(folder: Path, text: str) -> None:
    """What nanoGPT's data/shakespeare_char/prepare.py writes, without its download: sorted characters,
    the first 90% for training, uint16 ids, and the vocabulary in meta.pkl (the file its train.py reads)."""
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    split = int(0.9 * len(text))
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.bin", text[:split]), ("val.bin", text[split:])):
        np.array([index[c] for c in part], dtype=np.uint16).tofile(folder / name)
    with open(folder / "meta.pkl", "wb") as f:  # written here, read by nanoGPT: our own data, not a user's
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": index}, f)


def nanogpt_step_seconds(checkout: Path, steps: int) -> list[float]:
    flags = [
        "--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1", "--dropout=0.0",
        f"--max_iters={steps}", f"--lr_decay_iters={steps}", f"--eval_interval={10 * steps}",
        *(f"--{k}={v}" for k, v in SHAPE.items()),
    ]  # fmt: skip
    command = [sys.executable, "train.py", "config/train_shakespeare_char.py", *flags]
    log = run_quietly(command, cwd=checkout)
    if f"found vocab_size = {VOCAB}" not in log:  # else it would build GPT-2's 50,304-token output layer
        sys.exit("error: nanoGPT did not read the 65-character vocabulary from meta.pkl")
    times = [(int(i), float(ms) / 1000) for i, ms in re.findall(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", log)]
    return [dt for i, dt in times if i > WARMUP_STEPS]  # iteration 0 holds the evaluation


def tinyllm_step_seconds(folder: Path, steps: int, flags: list[str], cache: Path) -> list[float]:
    shape = [f"--{k.replace('_', '-')}={v}" for k, v in SHAPE.items()]
    command = ["train", "shakespeare", "--no-lowercase", *shape]
    options = ["--optimizer=adamw", "--schedule=cosine", "--lr=1e-3", "--min-lr=1e-4", "--warmup-iters=100"]
    budget = [f"--max-iters={steps}", "--max-time=3600", f"--eval-interval={10 * steps}", "--eval-iters=20"]
    rest = ["--dropout=0", *flags, "--no-progress", "--overwrite", "--out", str(folder)]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}  # --compile's cache: filled by the first run
    tinyllm(*command, *options, *budget, *rest, env=env)
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    pairs = pairwise(records)  # a step's time: from the previous step's end to its own (evaluated at the end only)
    return [b["elapsed_s"] - a["elapsed_s"] for a, b in pairs if b["iter"] > WARMUP_STEPS and "test_loss" not in b]


def model_forward_backward_ms(checkout: Path, repeats: int = 5) -> dict:
    """The two models alone, in this process: forward + cross-entropy + backward at SHAPE, median ms.

    Both without biases; tinyllm's GELU is GPT-2's tanh approximation (needed for the one-to-one
    Hugging Face mapping), nanoGPT's the exact erf one: timed alone too, on one MLP activation, by
    PyTorch's kernels and by tinyllm's sigmoid form (`tinyllm.speed.gelu`, what tinyllm trains with on a CPU)."""
    import torch
    import torch.nn.functional as F

    from tinyllm import GPT, GPTConfig
    from tinyllm.speed.gelu import SigmoidGELU

    sys.path.insert(0, str(checkout))
    import model as nanogpt_model  # nanoGPT's model.py

    shape = {k: v for k, v in SHAPE.items() if k != "batch_size"} | {"vocab_size": VOCAB, "bias": False}
    torch.manual_seed(0)
    models = {
        "nanogpt": nanogpt_model.GPT(nanogpt_model.GPTConfig(**shape, dropout=0.0)),
        "tinyllm": GPT(GPTConfig(**shape)),
    }
    x = torch.randint(VOCAB, (SHAPE["batch_size"], SHAPE["block_size"]))
    hidden = torch.randn(x.numel(), 4 * SHAPE["n_embd"], requires_grad=True)

    def step(name):
        if name == "nanogpt":  # nanoGPT's forward computes its own loss when given targets
            loss = models[name](x, x)[1]
        else:
            loss = F.cross_entropy(models[name](x).reshape(-1, VOCAB), x.reshape(-1))
        loss.backward()
        models[name].zero_grad(set_to_none=True)

    runs = {
        "nanogpt": lambda: step("nanogpt"),
        "tinyllm": lambda: step("tinyllm"),
        "gelu_tanh": lambda: F.gelu(hidden, approximate="tanh").sum().backward(),
        "gelu_erf": lambda: F.gelu(hidden).sum().backward(),
        "gelu_tinyllm": lambda: SigmoidGELU.apply(hidden).sum().backward(),  # tanh's maths, through a sigmoid
    }
    times = {name: [] for name in runs}
    for _ in range(repeats):  # alternate, so that noise hits all
        for name, fn in runs.items():
            started = time.perf_counter()
            for _ in range(20):
                fn()
            times[name].append((time.perf_counter() - started) / 20 * 1000)
    return {name: round(statistics.median(t), 2) for name, t in times.items()}


TINYLLM = {  # contender -> flags of `tinyllm train`
    "tinyllm": ["--no-bias"],  # nanoGPT's model: no biases
    "tinyllm_bias": ["--bias"],  # GPT-2's biases, tinyllm's default
    "tinyllm_compiled": ["--no-bias", "--compile"],  # with the compiled code already in the cache
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", type=Path, required=True, help="a checkout of karpathy/nanoGPT")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both programs")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    parser.add_argument("--with", dest="extra", nargs="*", default=[], choices=[n for n in TINYLLM if n != "tinyllm"])
    parser.add_argument("--models", action="store_true", help="also time the two models alone (forward + backward)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not (args.nanogpt / "train.py").is_file():
        sys.exit(f"error: {args.nanogpt} has no train.py (want a checkout of karpathy/nanoGPT)")
    from tinyllm.data import TINY_SHAKESPEARE, find_corpus, read_text

    text = read_text(find_corpus(TINY_SHAKESPEARE, None))
    tokens_per_step = SHAPE["batch_size"] * SHAPE["block_size"]
    contenders = ["nanogpt", "tinyllm", *args.extra]
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        checkout, run, cache = Path(tmp) / "nanoGPT", Path(tmp) / "run", Path(tmp) / "inductor-cache"
        shutil.copytree(args.nanogpt, checkout, ignore=shutil.ignore_patterns(".git", "out-*"))
        nanogpt_data(checkout / "data" / "shakespeare_char", text)
        if "tinyllm_compiled" in contenders:  # fill the cache once: the rounds time a warm cache
            tinyllm_step_seconds(run, 2 * WARMUP_STEPS, TINYLLM["tinyllm_compiled"], cache)
        for _ in range(args.rounds):
            seconds = {"nanogpt": nanogpt_step_seconds(checkout, args.steps)}
            for name in contenders[1:]:
                seconds[name] = tinyllm_step_seconds(run, args.steps, TINYLLM[name], cache)
            rounds.append({name: round(tokens_per_step / statistics.mean(s)) for name, s in seconds.items()})
            print(json.dumps(rounds[-1]), file=sys.stderr)
    median = {name: statistics.median(r[name] for r in rounds) for name in contenders}
    result = {
        "cpu": cpu_name(),
        "threads": os.cpu_count(),
        "config": SHAPE | {"optimizer": "adamw", "dropout": 0.0, "cased": True},
        "contenders": {"nanogpt": "train.py, --compile=False", **{n: TINYLLM[n] for n in contenders[1:]}},
        "steps_per_run": args.steps,
        "tokens_per_s_by_round": rounds,
        "median_tokens_per_s": median,
        "ratio_to_nanogpt_by_round": {n: [round(r[n] / r["nanogpt"], 3) for r in rounds] for n in contenders[1:]},
        "median_ratio_to_nanogpt": {
            n: round(statistics.median(r[n] / r["nanogpt"] for r in rounds), 3) for n in contenders[1:]
        },
    }
    if args.models:
        result["model_forward_backward_ms"] = model_forward_backward_ms(args.nanogpt)
    report(result, args.out)


if __name__ == "__main__":
    run_main(main)
