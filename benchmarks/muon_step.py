"""Muon's Newton-Schulz cost per optimizer step: one matrix at a time against one batch per shape.

    python benchmarks/muon_step.py [--repeats 30] [--device cpu|cuda] [--shapes baby shakespeare ...]

For the hidden matrices of the baby shape (4 layers, 128 wide) and the Shakespeare default (3
layers, 96 wide) -- or, for a GPU, nanoGPT's GPU Shakespeare shape (`nanogpt-gpu`, 6 layers, 384
wide) and GPT-2 small (`gpt2-small`, 12 layers, 768 wide) -- times the orthogonalisation of one step's updates two ways, alternating: each
matrix on its own with the iteration written as plain tensor maths (`x = a x + (b g + c g g) x`,
Muon's usual form), and `tinyllm.optim.orthogonalize` on a stack of the matrices of each shape with
fused multiply-adds (`baddbmm`), as tinyllm's `Muon` does; and that batched form with its products
in bfloat16 (`--muon-dtype bfloat16`, what `auto` picks on a CPU with bfloat16 instructions; on one
without them PyTorch emulates bfloat16 and this takes far longer; on a GPU `auto` keeps float32,
which this measures). Prints JSON: median milliseconds
and the differences between the results (largest entry; and bfloat16's relative to float32's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from tinyllm import GPT, GPTConfig
from tinyllm.optim import NEWTON_SCHULZ, muon_params, orthogonalize

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, report  # noqa: E402

SHAPES = {
    "baby": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65),
    "shakespeare": dict(n_layer=3, n_head=4, n_embd=96, block_size=256, vocab_size=65),
    "nanogpt-gpu": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65),
    "gpt2-small": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304),
}


def one_at_a_time(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The textbook form, one matrix, unfused: the baseline."""
    a, b, c = NEWTON_SCHULZ
    x = g.T if g.shape[0] > g.shape[1] else g
    x = x / x.norm().clamp(min=1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if g.shape[0] > g.shape[1] else x


def median_ms(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()  # a GPU returns before its work is done
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=["baby", "shakespeare"])
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU here")
    torch.manual_seed(0)
    result = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "device": args.device, "shapes": {}}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
    for name in args.shapes:
        with torch.device("meta"):  # only the parameters' shapes are needed, not their values
            model = GPT(GPTConfig(**SHAPES[name]))
        updates = [torch.randn(p.shape, device=device) for p in muon_params(model)[0]]
        stacks: dict[torch.Size, list[torch.Tensor]] = {}
        for u in updates:
            stacks.setdefault(u.shape, []).append(u)
        batches = [torch.stack(group) for group in stacks.values()]
        together = [m for batch in batches for m in orthogonalize(batch)]
        by_shape = [u for group in stacks.values() for u in group]  # `together`'s order
        difference = max((one_at_a_time(u) - m).abs().max().item() for u, m in zip(by_shape, together, strict=True))
        in_bf16 = [m for batch in batches for m in orthogonalize(batch, dtype=torch.bfloat16)]
        loop, batched, batched_bf16 = [], [], []
        for _ in range(3):  # alternate, so that noise hits all three alike
            loop.append(median_ms(lambda u=updates: [one_at_a_time(m) for m in u], args.repeats, device))
            batched.append(median_ms(lambda b=batches: [orthogonalize(s) for s in b], args.repeats, device))
            batched_bf16.append(
                median_ms(lambda b=batches: [orthogonalize(s, dtype=torch.bfloat16) for s in b], args.repeats, device)
            )
        result["shapes"][name] = {
            "matrices": len(updates),
            "one_at_a_time_ms": round(statistics.median(loop), 2),
            "batched_fused_ms": round(statistics.median(batched), 2),
            "speedup": round(statistics.median(loop) / statistics.median(batched), 2),
            "max_abs_difference": difference,
            "batched_fused_bfloat16_ms": round(statistics.median(batched_bf16), 2),
            "bfloat16_speedup": round(statistics.median(batched) / statistics.median(batched_bf16), 2),
            "bfloat16_max_abs_difference": max(
                (a - b).abs().max().item() for a, b in zip(together, in_bf16, strict=True)
            ),
            "largest_entry": max(m.abs().max().item() for m in together),  # the scale those differences are on
            "bfloat16_relative_difference": max(  # |bf16 - f32| / |f32|, Frobenius norms, the worst matrix
                ((a - b).norm() / a.norm()).item() for a, b in zip(together, in_bf16, strict=True)
            ),
        }
    report(result)


if __name__ == "__main__":
    main()
