"""Muon's Newton-Schulz products in bfloat16 where the CPU multiplies bfloat16 natively.

Muon (`optim.py`) orthogonalises each update by a few Newton-Schulz iterations: small matrix
products that, on a CPU, cost about as much as the model's own forward and backward. PyTorch's
`torch.optim.Muon` runs them in bfloat16. A CPU without bfloat16 instructions emulates those
products -- about 700 ms per optimizer step for the Shakespeare model on a 2-core AMD EPYC Zen 3,
against 2 ms for AdamW -- while one with them (AVX-512 BF16, as on AMD Zen 4, or Intel's AMX) runs
them faster than float32. So `--muon-dtype auto` picks bfloat16 only on such a CPU, and float32
everywhere else (GPUs included: not measured there). The optimizer computes in whichever precision
it is given (`Muon.ns_dtype`, float32 unless this package says otherwise); a test checks that the
two agree to bfloat16's precision.
"""

from __future__ import annotations

import torch

from .cpu import CpuInfo, this_cpu


def newton_schulz_dtype(choice: str, device: torch.device, cpu: CpuInfo | None = None) -> torch.dtype:
    """The precision of Muon's products that `choice` (auto, float32 or bfloat16) asks for. `auto`:
    bfloat16 on a CPU with bfloat16 instructions (`cpu`, default this one), float32 elsewhere."""
    if choice != "auto":
        return getattr(torch, choice)
    cpu = this_cpu() if cpu is None else cpu
    return torch.bfloat16 if device.type == "cpu" and cpu.has_bfloat16_products else torch.float32


def set_muon_precision(
    optimizers: list[torch.optim.Optimizer], choice: str, device: torch.device
) -> torch.dtype | None:
    """Give every optimizer that orthogonalises (has `ns_dtype`: Muon) the precision `choice` asks for
    on `device`; returns it (None: no such optimizer)."""
    dtype = None
    for optimizer in optimizers:
        if hasattr(optimizer, "ns_dtype"):
            dtype = optimizer.ns_dtype = newton_schulz_dtype(choice, device)
    return dtype
