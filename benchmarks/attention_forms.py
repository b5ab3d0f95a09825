"""Causal attention at the Shakespeare shape, forward + backward, computed several ways, alternated.

    python benchmarks/attention_forms.py [--rounds 9] [--repeats 20] [--out results.json]

One block's attention as the Shakespeare model trains it: batch 8, context 256, 96 dimensions cut
into heads, from one (8, 256, 288) query-key-value activation (what `c_attn` writes), gradients
back into it. The forms:

- `flash`: `F.scaled_dot_product_attention(is_causal=True)` as `model.py` calls it (PyTorch's CPU
  flash kernel), with 4 heads of 24 dimensions (the default), 3 of 32 and 2 of 48: the same
  products, in other shapes;
- `flash, padded to 32`: the 24 dimensions of each head padded with zeros to 32 (the scale kept at
  1/sqrt(24)): the same result, in a width that fills whole vector registers;
- `math`: PyTorch's reference kernel (`SDPBackend.MATH`), which builds the whole T x T matrix;
- `written out`: q k^T / sqrt(d), the causal mask, softmax, times v, as nanoGPT writes it without
  flash attention.

Medians of `--rounds` rounds of `--repeats` calls each, the forms one after another in every round,
so that a slow spell of the machine hits them all. Prints JSON: microseconds per call, and the
largest gradient difference of each form from `flash` with the same heads.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, report, run_main  # noqa: E402

BATCH, CONTEXT, WIDTH = 8, 256, 96  # the Shakespeare default


def attention(qkv: torch.Tensor, heads: int, form: str) -> torch.Tensor:
    """Causal attention of one (B, T, 3C) activation, by `form`; returns (B, n_head, T, head_dim)."""
    B, T, _ = qkv.shape
    d = WIDTH // heads
    q, k, v = (t.view(B, T, heads, d).transpose(1, 2) for t in qkv.split(WIDTH, dim=2))
    if form == "flash":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if form == "flash, padded to 32":
        padded = (F.pad(t, (0, 32 - d)) for t in (q, k, v))
        return F.scaled_dot_product_attention(*padded, is_causal=True, scale=1 / math.sqrt(d))[..., :d]
    if form == "math":
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(d)  # written out
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(dim=-1) @ v


def gradient(qkv: torch.Tensor, heads: int, form: str) -> torch.Tensor:
    """Forward and backward once; the gradient that reaches the query-key-value activation."""
    qkv.grad = None
    attention(qkv, heads, form).sum().backward()
    return qkv.grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=20, help="calls per round and form")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if args.rounds < 1 or args.repeats < 1:
        parser.error("--rounds and --repeats take positive numbers")
    torch.manual_seed(0)
    qkv = torch.randn(BATCH, CONTEXT, 3 * WIDTH, requires_grad=True)
    variants = {
        "flash, 4 heads of 24 (the default)": (4, "flash"),
        "flash, padded to 32, 4 heads of 24": (4, "flash, padded to 32"),
        "math, 4 heads of 24": (4, "math"),
        "written out, 4 heads of 24": (4, "written out"),
        "flash, 3 heads of 32": (3, "flash"),
        "flash, 2 heads of 48": (2, "flash"),
    }
    reference = {heads: gradient(qkv, heads, "flash").clone() for heads in (4, 3, 2)}
    difference = {
        name: (gradient(qkv, heads, form) - reference[heads]).abs().max().item()
        for name, (heads, form) in variants.items()
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (heads, form) in variants.items():
            started = time.perf_counter()
            for _ in range(args.repeats):
                gradient(qkv, heads, form)
            times[name].append((time.perf_counter() - started) / args.repeats * 1e6)
    report(
        {
            "cpu": cpu_name(),
            "threads": torch.get_num_threads(),
            "shape": dict(batch=BATCH, context=CONTEXT, width=WIDTH),
            "microseconds_forward_backward": {name: round(statistics.median(t)) for name, t in times.items()},
            "largest_gradient_difference_from_flash": {name: float(f"{d:.2g}") for name, d in difference.items()},
        },
        args.out,
    )


if __name__ == "__main__":
    run_main(main)
