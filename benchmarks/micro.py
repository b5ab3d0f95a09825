"""Micro-measurements: one mechanism of `tinyllm/speed/` each, timed on this machine.

    python benchmarks/micro.py malloc [--rounds 4] [--steps 20]   # speed/allocator.py: page faults and ms a step
    python benchmarks/micro.py gelu [--rounds 9] [--repeats 30]   # speed/gelu.py: the sigmoid form vs PyTorch's
    python benchmarks/micro.py muon [--device cuda] [--repeats 20] # speed/muon_precision.py: float32 vs bfloat16
    python benchmarks/micro.py onednn [--repeats 5]               # speed/onednn.py: oneDNN vs MKL per product

Each prints one JSON object (and writes it to `--out`). Contenders alternate round by round, so a
noisy spell of the machine hits them alike; the figures are medians. What each decided, and the
figures of earlier runs, are in docs/performance.md and docs/log.md. Page-fault counts and step times
depend on the machine and on what else it is doing: that is why they are measured here, not tested.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, report  # noqa: E402

SHAKESPEARE = dict(n_layer=3, n_head=4, n_embd=96, block_size=256, vocab_size=65)  # the default model, 8 x 256


def timed(fn, repeats: int) -> float:
    """Seconds per call of `fn`, the fastest of three batches of `repeats` (noise only adds time)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


# ---- malloc: the Trainer alone in a fresh process, glibc's defaults against memory kept ----

STEPS_IN_A_FRESH_PROCESS = r"""
import json, resource, sys, time
import torch
from tinyllm import GPT, GPTConfig
from tinyllm.config import TrainConfig
from tinyllm.runtime import Runtime
from tinyllm.speed import SpeedSettings
from tinyllm.tasks.base import TaskModel
from tinyllm.training import Trainer

if sys.argv[1] == "glibc default":
    import tinyllm.speed as speed
    speed.keep_freed_memory = lambda: False  # what apply() calls: leave malloc as it is
torch.manual_seed(0)
config = GPTConfig(**json.loads(sys.argv[3]))

def get_batch(split, generator):
    tokens = torch.randint(config.vocab_size, (8, config.block_size + 1), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]

train = TrainConfig(batch_size=8, max_iters=10_000, optimizer="muon", device="cpu")
trainer = Trainer(TaskModel(GPT(config)), get_batch, train, runtime=Runtime(train, speed_settings=SpeedSettings("default")))
for _ in range(10):  # warm-up: the heap grows to one step's peak
    trainer.step()
steps = int(sys.argv[2])
faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
losses = [trainer.step()["train_loss"] for _ in range(steps)]
print(json.dumps({
    "ms_per_step": (time.perf_counter() - start) / steps * 1000,
    "faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps,
    "losses": losses,
}))
"""


def malloc(args: argparse.Namespace) -> dict:
    runs: dict[str, list[dict]] = {"kept": [], "glibc default": []}
    for _ in range(args.rounds):
        for mode in runs:
            command = [sys.executable, "-c", STEPS_IN_A_FRESH_PROCESS, mode, str(args.steps), json.dumps(SHAKESPEARE)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            runs[mode].append(json.loads(out.splitlines()[-1]))
    medians = {
        mode: {key: round(statistics.median(r[key] for r in rs), 2) for key in ("ms_per_step", "faults_per_step")}
        for mode, rs in runs.items()
    }
    return {
        "what": "the Shakespeare model's Trainer alone in a fresh process, Muon, 8 x 256 random tokens a step",
        "medians": medians,
        "speedup": round(medians["glibc default"]["ms_per_step"] / medians["kept"]["ms_per_step"], 3),
        "same_losses": all(a["losses"] == b["losses"] for a, b in zip(*runs.values(), strict=True)),
    }


# ---- gelu: GPT-2's tanh GELU, PyTorch's kernel against the sigmoid form; nanoGPT's erf for scale ----


def gelu(args: argparse.Namespace) -> dict:
    from tinyllm.speed.gelu import SigmoidGELU

    shapes = {"baby (768 x 512)": (768, 512), "shakespeare (2048 x 384)": (2048, 384)}
    forms = {
        "pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "tinyllm_sigmoid": SigmoidGELU.apply,
        "erf (nanoGPT's, another function)": F.gelu,
    }
    result = {}
    for shape_name, shape in shapes.items():
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).requires_grad_()
        grad = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
        times: dict[str, list[float]] = {name: [] for name in forms}
        for _ in range(args.rounds):
            for name, form in forms.items():
                times[name].append(timed(lambda form=form, x=x, grad=grad: form(x).backward(grad), args.repeats))
        result[shape_name] = {name: round(statistics.median(t) * 1e6) for name, t in times.items()}
    return {"what": "microseconds, forward + backward, one layer's activations", "timings": result}


# ---- muon: the Newton-Schulz products of one optimizer step, float32 against bfloat16 ----


def muon(args: argparse.Namespace) -> dict:
    from tinyllm.optim import orthogonalize

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda was asked for, but PyTorch sees no CUDA GPU")
    C, L = SHAKESPEARE["n_embd"], SHAKESPEARE["n_layer"]
    generator = torch.Generator().manual_seed(0)
    # per block: q, k, v (C x C each, split as Muon splits them), the output projection, the MLP's two
    stacks = [torch.randn(4 * L, C, C, generator=generator), torch.randn(L, 4 * C, C, generator=generator)]
    stacks += [torch.randn(L, C, 4 * C, generator=generator)]
    stacks = [s.to(device) for s in stacks]

    def step(dtype):
        out = [orthogonalize(s, dtype=dtype) for s in stacks]
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for _ in range(args.rounds):
        for name in times:
            times[name].append(timed(lambda name=name: step(getattr(torch, name)), args.repeats))
    exact, rounded = step(torch.float32), step(torch.bfloat16)
    difference = max(float((a - b).abs().max()) for a, b in zip(exact, rounded, strict=True))
    ms = {name: round(statistics.median(t) * 1000, 2) for name, t in times.items()}
    return {
        "what": "ms for one step's orthogonalisation of the Shakespeare model's matrices",
        "device": str(device),
        "ms": ms,
        "bfloat16_speedup": round(ms["float32"] / ms["bfloat16"], 2),
        "largest_difference": round(difference, 4),
    }


# ---- onednn: one Linear layer's three training products, oneDNN against PyTorch's default ----


def onednn(args: argparse.Namespace) -> dict:
    from tinyllm.speed.cpu import this_cpu
    from tinyllm.speed.onednn import onednn_available, onednn_pays, onednn_speedup

    if not onednn_available():
        return {"onednn": "not in this PyTorch build"}
    products = {"1024 x 128 -> 512": (1024, 128, 512), "shakespeare MLP 2048 x 96 -> 384": (2048, 96, 384)}
    products["baby output 768 x 128 -> 65"] = (768, 128, 65)
    return {
        "what": "oneDNN's speed over PyTorch's default (MKL) on a Linear layer's forward and backward products",
        "speedup": {name: round(onednn_speedup(*shape, repeats=args.repeats), 2) for name, shape in products.items()},
        "auto_picks_onednn": {name: onednn_pays(*shape) for name, shape in products.items()},
        "cpu_rule": {"vendor": this_cpu().vendor, "family": this_cpu().family},
    }


SUBCOMMANDS = {"malloc": malloc, "gelu": gelu, "muon": muon, "onednn": onednn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    for name, rounds, repeats in (("malloc", 4, 0), ("gelu", 9, 30), ("muon", 3, 20), ("onednn", 0, 5)):
        p = sub.add_parser(name, help=SUBCOMMANDS[name].__name__)
        p.add_argument("--rounds", type=int, default=rounds, help="alternated rounds of the contenders")
        p.add_argument("--repeats", type=int, default=repeats, help="calls per timing")
        p.add_argument("--out", type=Path, help="also write the JSON here")
        if name == "malloc":
            p.add_argument("--steps", type=int, default=20, help="timed steps per process, after 10 of warm-up")
        if name == "muon":
            p.add_argument("--device", default="cpu")
    args = parser.parse_args()
    result = {"cpu": cpu_name(), "threads": torch.get_num_threads(), **SUBCOMMANDS[args.what](args)}
    report(result, args.out)


if __name__ == "__main__":
    main()
