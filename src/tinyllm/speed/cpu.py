"""What the speed rules need to know of this processor: its vendor, family and instruction sets.

Each rule in this package is fixed by the CPU, never by a timing taken during a run, so that a
run makes the same choice every time on a machine and a resumed run computes like the original.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuInfo:
    """What the rule needs to know of a processor: its vendor, family (AMD: 25 is Zen 3/4, 26 is
    Zen 5) and feature flags, as /proc/cpuinfo lists them."""

    vendor: str = ""
    family: int = 0
    flags: frozenset[str] = frozenset()

    @property
    def onednn_is_faster(self) -> bool:
        """AMD Zen 5 or newer with AVX-512: where oneDNN's float32 kernels were measured to beat MKL's."""
        return self.vendor == "AuthenticAMD" and self.family >= 26 and "avx512f" in self.flags

    @property
    def has_bfloat16_products(self) -> bool:
        """Whether the CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX; AMD from Zen 4): without
        these instructions PyTorch emulates bfloat16 products, many times slower than float32's."""
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)


@functools.cache
def this_cpu() -> CpuInfo:
    """This machine's `CpuInfo`, read from /proc/cpuinfo (an empty one where there is none: macOS, Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return CpuInfo()
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    family = info.get("cpu family", "0")
    return CpuInfo(
        info.get("vendor_id", ""), int(family) if family.isdigit() else 0, frozenset(info.get("flags", "").split())
    )
