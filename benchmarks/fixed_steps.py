"""Learning per step: recipes compared at one fixed number of optimizer steps, not one wall-clock budget.

    TINYLLM_DATA_DIR=../shared/data python benchmarks/fixed_steps.py --steps 1500 --seeds 1 \
        --recipes default emb-lr-x3 zero-proj heads3 [--out results.json]

A time budget mixes two things: how fast each step is, and how much each step learns. On a shared
machine whose speed drifts by half within an hour, the first drowns the second. With a fixed number
of steps (and the schedule fitted to them) a CPU run with one seed repeats exactly, at any speed:
so a lever that does not change the cost of a step (a learning rate, an initialisation, weight
decay) is judged here, noise-free, and only the winners need the slow, noisy time-budget runs of
`time_to_quality.py`. Cased tiny Shakespeare; each run scored by `tinyllm eval RUN --json`.

Most recipes are flags of `tinyllm train`. A few levers have no flag (they lost, so they never got
one); this script applies them to the library before training, in its own worker process:
- `emb-lr-xF`: the AdamW group (embeddings, tied output layer, 1-D parameters) at F times the rate
- `muon-lr-xF`: the Muon group (hidden matrices) at F times the rate
- `zero-proj`: the two residual projections of each block start at zero instead of GPT-2's small
  random values (a block then starts as the identity; modded-nanogpt's choice)
- `decay-sqrt`: WSD's decay follows 1 - sqrt(fraction of the decay done) instead of a straight line
  (Hägele et al. 2024's cooldown: the rate stays higher for longer, then drops at the very end)
- `muon-momentum-F`: Muon's momentum F instead of 0.95
- `muon-momentum-warmup`: Muon's momentum rising from 0.85 to 0.95 over the first 300 steps
  (modded-nanogpt's warm-up: a shorter memory while the gradients change fastest)
- `muon-fused-qkv`: GPT-2's fused query-key-value matrix (3C x C) orthogonalised as one matrix, as
  tinyllm did before it split it into its three C x C matrices (the default since, chosen here)
- `muon-qkv-per-head`: split further, each head's query, key and value matrix (C/heads x C) on its own
- `muon-quintic`: Muon's Newton-Schulz iterations with one quintic five times (PyTorch's, tinyllm's
  before it took the Polar Express polynomials, the default since, chosen here)
- `muon-rows-off`: no NorMuon row sizes (tinyllm's Muon before it took them, chosen here)
- `muon-rows-beta-F`: NorMuon's running average of row sizes with F instead of 0.95
- `half-batch-first-F`: half the batch (4 sequences, not 8) for the first F of the budget, then the
  whole: more, cheaper steps while the gradients are large (a batch-size warm-up; for time budgets)
- `reshuffle`: training windows drawn without replacement: each epoch cuts the training text into
  windows at a fresh random offset and serves them in a fresh random order, so every character is
  seen once an epoch (random reshuffling) instead of at random (nanoGPT's and tinyllm's random crops)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import alternate, cpu_name, report, tinyllm  # noqa: E402

RECIPES = {  # name -> (flags of `tinyllm train shakespeare`, levers without a flag)
    "default": ([], []),
    "emb-lr-x3": ([], ["emb-lr-x3"]),
    "emb-lr-x0.5": ([], ["emb-lr-x0.5"]),
    "muon-lr-x1.67": ([], ["muon-lr-x1.67"]),
    "muon-lr-x1.5": ([], ["muon-lr-x1.5"]),
    "muon-lr-x0.67": ([], ["muon-lr-x0.67"]),
    "muon-lr-x1.33": ([], ["muon-lr-x1.33"]),  # on the default's 1.5: 2x --lr
    "zero-proj": ([], ["zero-proj"]),
    "wd0": (["--weight-decay", "0"], []),
    "decay0.4": (["--decay-fraction", "0.4"], []),
    "decay0.3": (["--decay-fraction", "0.3"], []),  # a longer decay: more steps for the weights' average
    "heads2": (["--n-head", "2"], []),
    "heads3": (["--n-head", "3"], []),
    "min-lr0": (["--min-lr", "0"], []),
    "beta2-0.95": (["--beta2", "0.95"], []),
    "warmup20": (["--warmup-iters", "20"], []),
    "no-clip": (["--grad-clip", "0"], []),
    "decay-sqrt": ([], ["decay-sqrt"]),
    "decay-sqrt-0.4": (["--decay-fraction", "0.4"], ["decay-sqrt"]),
    "muon-momentum-0.9": ([], ["muon-momentum-0.9"]),
    "muon-momentum-0.97": ([], ["muon-momentum-0.97"]),
    "muon-momentum-warmup": ([], ["muon-momentum-warmup"]),
    "muon-fused-qkv": ([], ["muon-fused-qkv"]),
    # Muon's rate at 1x --lr, as before shakespeare's default became 1.5x; and with q, k, v fused too
    "muon-lr-scale-1": (["--muon-lr-scale", "1"], []),
    "muon-fused-qkv-lr-scale-1": (["--muon-lr-scale", "1"], ["muon-fused-qkv"]),
    "muon-qkv-per-head": ([], ["muon-qkv-per-head"]),
    # Muon's polynomials and row sizes: each undone, and both (the default before, PyTorch's Muon step)
    "muon-quintic": ([], ["muon-quintic"]),
    "muon-rows-off": ([], ["muon-rows-off"]),
    "muon-quintic-rows-off": ([], ["muon-quintic", "muon-rows-off"]),
    "muon-rows-beta-0.9": ([], ["muon-rows-beta-0.9"]),
    "muon-rows-beta-0.99": ([], ["muon-rows-beta-0.99"]),
    "muon-rows-beta-0.8": ([], ["muon-rows-beta-0.8"]),
    "muon-rows-beta-0.5": ([], ["muon-rows-beta-0.5"]),
    # the precision of Muon's Newton-Schulz products (`default` is `auto`: bfloat16 on a CPU with
    # bfloat16 instructions, float32 elsewhere): the two, named, to compare them on any CPU
    "muon-float32": (["--muon-dtype", "float32"], []),
    "muon-bfloat16": (["--muon-dtype", "bfloat16"], []),
    # PyTorch's own tanh-GELU kernel instead of tinyllm.gelu's sigmoid form (the same function; slower
    # on a CPU): what the faster GELU buys in a whole run
    "gelu-pytorch": ([], ["gelu-pytorch"]),
    # weight averaging over the final decay, the averaged weights scored (`--ema-decay`; 0.98 won
    # here first, as a lever of this script with the same arithmetic; the default is 0.995 now)
    "no-ema": (["--ema-decay", "0"], []),
    "ema-0.98": (["--ema-decay", "0.98"], []),
    "ema-0.99": (["--ema-decay", "0.99"], []),
    "ema-0.995": (["--ema-decay", "0.995"], []),
    "ema-0.998": (["--ema-decay", "0.998"], []),
    # a batch-size warm-up (for time budgets: time_to_quality.py)
    "half-batch-first-0.3": ([], ["half-batch-first-0.3"]),
    "half-batch-first-0.5": ([], ["half-batch-first-0.5"]),
    # every training window once an epoch, in a random order, instead of random crops
    "reshuffle": ([], ["reshuffle"]),
}


def apply_levers(levers: list[str]) -> None:
    """Patch the library for the levers that have no flag (in the worker process only)."""
    import math

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    import tinyllm.gelu as gelu
    import tinyllm.model as model
    import tinyllm.optim as optim
    import tinyllm.tasks.text as text
    import tinyllm.training as training

    def scale_rates(optimizer, factor: float) -> None:  # the Trainer sets group["lr"]; scale what it sets
        class ScaledGroup(dict):
            def __setitem__(self, key, value):
                super().__setitem__(key, value * factor if key == "lr" else value)

        optimizer.param_groups = [ScaledGroup(group) for group in optimizer.param_groups]

    make_optimizers = training.make_optimizers

    def patched_optimizers(gpt, config, device):
        optimizers = make_optimizers(gpt, config, device)  # [AdamW, Muon]
        for lever in levers:
            if lever.startswith("emb-lr-x"):
                scale_rates(optimizers[0], float(lever.removeprefix("emb-lr-x")))
            if lever.startswith("muon-lr-x"):
                scale_rates(optimizers[1], float(lever.removeprefix("muon-lr-x")))
            if lever == "muon-fused-qkv":
                optimizers[1].pieces = {}  # the fused query-key-value matrix orthogonalised as one
            if lever == "muon-quintic":
                optimizers[1].polynomials = optim.QUINTIC  # one quintic five times, as PyTorch's Muon
            if lever == "muon-rows-off":
                optimizers[1].row_beta = None  # no NorMuon row sizes
            if lever.startswith("muon-rows-beta-"):
                optimizers[1].row_beta = float(lever.removeprefix("muon-rows-beta-"))
            if lever == "muon-qkv-per-head":  # every head's query, key and value matrix on its own
                heads = next(m.n_head for m in gpt.modules() if hasattr(m, "n_head"))
                optimizers[1].pieces = {p: 3 * heads for p in optimizers[1].pieces}
        return optimizers

    gpt_init = model.GPT.__init__

    def patched_init(self, config):
        gpt_init(self, config)
        if "zero-proj" in levers:
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    nn.init.zeros_(p)

    muon_step = optim.Muon.step

    def patched_step(self, closure=None):
        self.steps_taken = getattr(self, "steps_taken", 0) + 1
        for group in self.param_groups:
            for lever in levers:
                if lever == "muon-momentum-warmup":
                    group["momentum"] = 0.85 + 0.10 * min(1.0, (self.steps_taken - 1) / 300)
                elif lever.startswith("muon-momentum-"):
                    group["momentum"] = float(lever.removeprefix("muon-momentum-"))
        return muon_step(self, closure)

    lr_at = training.Trainer.lr_at

    def patched_lr_at(self, it, elapsed):
        cfg = self.config
        if "decay-sqrt" not in levers or it < cfg.warmup_iters:
            return lr_at(self, it, elapsed)
        min_lr = cfg.lr / 10 if cfg.min_lr is None else cfg.min_lr
        # how much of the decay is done: 0 until it starts, 1 at the end of the budget
        done = max(0.0, 1.0 - (1.0 - self.progress(it, elapsed)) / cfg.decay_fraction)
        return min_lr + (1.0 - math.sqrt(done)) * (cfg.lr - min_lr)

    trainer_step = training.Trainer.step
    half_batch_until = [float(lever.split("-")[-1]) for lever in levers if lever.startswith("half-batch-first-")]

    def half_batch_step(self):  # half the batch while the run is young: more, noisier steps first
        get_batch = self.get_batch
        if self.progress() < half_batch_until[0]:
            self.get_batch = lambda split, gen: tuple(t[: len(t) // 2] for t in get_batch(split, gen))
        try:
            return trainer_step(self)
        finally:
            self.get_batch = get_batch

    if half_batch_until:
        training.Trainer.step = half_batch_step

    random_windows = text.random_windows
    epoch_windows = []  # the training split's window starts left in this epoch
    drawing_training_batch = False  # True inside Trainer.step (not while it evaluates)

    def reshuffled_windows(tokens, block_size, batch_size, generator):
        if not drawing_training_batch:  # the evaluations: random crops from their fixed seed, as before
            return random_windows(tokens, block_size, batch_size, generator)
        while len(epoch_windows) < batch_size:  # a new epoch: a fresh offset, a fresh order
            offset = int(torch.randint(block_size, (1,), generator=generator))
            starts = torch.arange(offset, len(tokens) - block_size, block_size)
            epoch_windows.extend(starts[torch.randperm(len(starts), generator=generator)].tolist())
        starts = torch.tensor([epoch_windows.pop() for _ in range(batch_size)]).unsqueeze(1)
        windows = tokens[starts + torch.arange(block_size + 1)]
        return windows[:, :-1], windows[:, 1:]

    inner_step = training.Trainer.step  # with the half-batch lever, its step: the two levers stack

    def reshuffle_step(self):
        nonlocal drawing_training_batch
        drawing_training_batch = True
        try:
            return inner_step(self)
        finally:
            drawing_training_batch = False

    if "reshuffle" in levers:
        text.random_windows = reshuffled_windows
        training.Trainer.step = reshuffle_step
    if "gelu-pytorch" in levers:  # GPT-2's GELU by PyTorch's kernel, as before tinyllm.gelu
        gelu.GELU.forward = lambda self, x: F.gelu(x, approximate="tanh")
    training.make_optimizers = patched_optimizers
    training.Trainer.lr_at = patched_lr_at
    model.GPT.__init__ = patched_init
    optim.Muon.step = patched_step


def run_recipe(name: str, seed: int, steps: int, folder: Path) -> dict:
    flags, levers = RECIPES[name]
    out = folder / f"{name}-seed{seed}"
    budget = ["--max-iters", str(steps), "--max-time", "24h"]  # the steps, not the clock, end the run
    train = ["train", "shakespeare", "--no-lowercase", "--out", str(out), *budget, *flags]
    tinyllm(*train, "--seed", str(seed), "--no-progress", "--overwrite", levers=levers)
    evaluated = json.loads(tinyllm("eval", str(out), "--json"))
    return {"recipe": name, "flags": flags, "levers": levers, "seed": seed, "steps": steps,
            "test_loss": round(evaluated["test_loss"], 4)}  # fmt: skip


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":  # --worker LEVERS -- ARGS OF `tinyllm`
        apply_levers([lever for lever in sys.argv[2].split(",") if lever])
        from tinyllm.cli import main as tinyllm

        sys.exit(tinyllm(sys.argv[4:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    runs = alternate(args.seeds, args.recipes, lambda name, seed, folder: run_recipe(name, seed, args.steps, folder))
    report({"cpu": cpu_name(), "steps": args.steps, "cased": True, "runs": runs}, args.out)


if __name__ == "__main__":
    main()
