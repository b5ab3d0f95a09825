"""GPT-2's GELU on the CPU: PyTorch's tanh kernel against the same function written another way.

    python benchmarks/gelu_forms.py [--rounds 5] [--repeats 200] [--steps 20] [--out results.json]

GPT-2 (and so the one-to-one Hugging Face mapping) uses the tanh approximation of GELU,
0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3); nanoGPT uses the exact, erf form. The
profile of a training step (`step_profile.py`) gives GELU 16-22% of a CPU step, more than the
attention at the baby shape. The tanh form is algebraically x * sigmoid(2u), and PyTorch's CPU
sigmoid is far cheaper than its tanh, so this times, on one layer's activations at the baby shape
(12 x 64 rows, 512 wide) and the Shakespeare shape (8 x 256 rows, 384 wide):

- `tanh`: `F.gelu(x, approximate="tanh")`, what tinyllm runs;
- `erf`: `F.gelu(x)`, nanoGPT's (another function: the reference for speed only);
- `sigmoid`: x * sigmoid(2u) in a few in-place passes, backward by PyTorch's own tanh-GELU backward;
- `tinyllm`: `tinyllm.gelu.SigmoidGELU`, what `tinyllm train` runs on a CPU since a later session:
  the sigmoid form, keeping sigmoid(2u) for a backward pass written out without tanh.

Forward alone and forward + backward, microseconds, median of `--rounds` alternated rounds, plus the
largest difference from a float64 tanh GELU. Then what it does to a whole training step (`Trainer.step`,
as `step_profile.py` builds it: baby with AdamW, as nanoGPT's recipe; Shakespeare with Muon, the
default): two models alike but for the GELU (`tinyllm.gelu.GELU`, or PyTorch's `nn.GELU("tanh")`),
`--steps` steps each in alternated rounds, median milliseconds a step. Prints JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tinyllm import GPT, GPTConfig
from tinyllm.cpu_memory import keep_freed_memory
from tinyllm.gelu import TWO_C, K, SigmoidGELU

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, report, run_main  # noqa: E402
from step_profile import SHAPES as STEP_SHAPES  # noqa: E402
from step_profile import random_token_trainer  # noqa: E402

SHAPES = {"baby": (12 * 64, 4 * 128), "shakespeare": (8 * 256, 4 * 96)}  # (rows, hidden width) of one MLP


class SigmoidFormGELU(torch.autograd.Function):
    """GPT-2's GELU as x * sigmoid(2u): the same function, computed with PyTorch's cheaper sigmoid."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        two_u = x * x
        two_u.mul_(TWO_C * K).add_(TWO_C).mul_(x)  # 2u = 2c (x + K x^3), K = 0.044715
        return two_u.sigmoid_().mul_(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return torch.ops.aten.gelu_backward(grad, x, approximate="tanh")


FORMS = {
    "tanh": lambda x: F.gelu(x, approximate="tanh"),
    "erf": F.gelu,
    "sigmoid": SigmoidFormGELU.apply,
    "tinyllm": SigmoidGELU.apply,
}


def time_us(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1e6 * (time.perf_counter() - start) / repeats


def measure(rows: int, width: int, rounds: int, repeats: int) -> dict:
    torch.manual_seed(0)
    x = torch.randn(rows, width)
    grad = torch.randn(rows, width)
    leaf = x.clone().requires_grad_()
    reference = F.gelu(x.double(), approximate="tanh")
    steps = {}
    for name, form in FORMS.items():
        steps[(name, "forward")] = lambda form=form: form(x)
        steps[(name, "forward_backward")] = lambda form=form: form(leaf).backward(grad)
    for step in steps.values():  # warm-up: the first calls allocate
        step()
    times: dict[tuple[str, str], list[float]] = {key: [] for key in steps}
    for _ in range(rounds):  # one form after the other, so that a slow spell hits them all
        for key, step in steps.items():
            times[key].append(time_us(step, repeats))
    result = {}
    for name, form in FORMS.items():
        result[name] = {
            "forward_us": round(statistics.median(times[(name, "forward")]), 1),
            "forward_backward_us": round(statistics.median(times[(name, "forward_backward")]), 1),
            "max_abs_diff_vs_float64_tanh": float((form(x).double() - reference).abs().max()),
        }
    return result


def training_step_ms(shape: str, optimizer: str, rounds: int, steps: int) -> dict:
    """Milliseconds per `Trainer.step`, tinyllm's GELU against PyTorch's kernel, alternated (medians)."""
    model_shape, batch = STEP_SHAPES[shape]
    trainers = {}
    for gelu in ("tinyllm", "pytorch"):
        torch.manual_seed(0)
        gpt = GPT(GPTConfig(**model_shape))
        if gelu == "pytorch":
            for block in gpt.transformer.h:
                block.mlp.gelu = torch.nn.GELU(approximate="tanh")
        trainers[gelu] = random_token_trainer(gpt, batch, optimizer)
        for _ in range(5):  # warm-up: the first steps allocate
            trainers[gelu].step()
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(rounds):
        for name, trainer in trainers.items():
            times[name].append(time_us(trainer.step, steps) / 1000)
    ms = {name: round(statistics.median(t), 2) for name, t in times.items()}
    return {"optimizer": optimizer, "step_ms": ms, "speedup": round(ms["pytorch"] / ms["tinyllm"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20, help="training steps per round and model (0: skip)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.rounds < 1 or args.repeats < 1 or args.steps < 0:
        parser.error("--rounds and --repeats take a positive number, --steps zero or more")
    shapes = {}
    for shape, (rows, width) in SHAPES.items():
        shapes[shape] = {"rows": rows, "width": width, **measure(rows, width, args.rounds, args.repeats)}
    result = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__, "shapes": shapes}
    if args.steps > 0:
        keep_freed_memory()  # as `tinyllm train` on a CPU
        result["training_step"] = {
            shape: training_step_ms(shape, optimizer, args.rounds, args.steps)
            for shape, optimizer in (("baby", "adamw"), ("shakespeare", "muon"))
        }
    report(result, args.out)


if __name__ == "__main__":
    run_main(main)
