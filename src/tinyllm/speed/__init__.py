"""Speed: the same maths, computed faster on some CPUs. A first read of tinyllm can skip this package.

`model.py` builds plain GPT-2 and `optim.py` plain Muon and AdamW. When the runtime places a model
for training it makes one call, `apply(...)`, and this package changes *how* some of it is computed
on the machine at hand -- never *what* is computed: every trick gives the same numbers to float
rounding (the tests compare each with the plain form), and each is chosen by a fixed rule of the
processor, never by a timing, so a run repeats and resumes exactly.

- `gelu.py`: GPT-2's tanh GELU computed through a sigmoid, to train on a CPU (a step ~4% faster).
- `onednn.py`: float32 Linear products by oneDNN instead of MKL, where that was measured to pay
  (AMD Zen 5 with AVX-512: training 1.6-1.8x Hugging Face's speed instead of ~1.2x).
- `allocator.py`: glibc's malloc told to keep freed memory for the next step (page faults cost
  3-14% of a CPU step).
- `muon_precision.py`: Muon's Newton-Schulz products in bfloat16 where the CPU has bfloat16
  instructions, float32 where it would emulate them.
- `cpu.py`: what the rules read of the processor.

`SpeedSettings` holds the two choices a user can override (`--cpu-matmul`, `--muon-dtype`); they are
saved with the run under "speed" in config.json. docs/performance.md has the measurements.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..settings import check_fields, from_dict, setting
from .allocator import keep_freed_memory
from .gelu import use_sigmoid_gelu
from .muon_precision import set_muon_precision
from .onednn import onednn_available, use_onednn_linear, use_onednn_where_it_pays

__all__ = ["SpeedSettings", "apply"]


@dataclass
class SpeedSettings:
    """How to compute on this machine (not what): each field is a `tinyllm train` flag."""

    cpu_matmul: str = setting(
        "auto",
        "who computes float32 products on the CPU: oneDNN where it is known to pay (auto), always, or never",
        choices=("auto", "onednn", "default"),
    )
    muon_dtype: str = setting(
        "auto",
        "precision of Muon's Newton-Schulz products: bfloat16 where the CPU has bfloat16 instructions (auto), "
        "else float32; or always float32 / bfloat16",
        choices=("auto", "float32", "bfloat16"),
    )

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SpeedSettings:
        return from_dict(cls, values, "speed")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self, dtype: str, compile: bool) -> None:
        """Refuse a choice that cannot apply to training in `dtype`, compiled or not."""
        if self.cpu_matmul == "onednn" and (compile or dtype != "float32"):
            raise ConfigError("cpu_matmul onednn is for eager float32 training (not with compile or autocast)")


def apply(
    model: nn.Module,
    optimizers: list[torch.optim.Optimizer],
    device: torch.device,
    *,
    dtype: str = "float32",
    compile: bool = False,
    rows: int | None = None,
    settings: SpeedSettings | None = None,
) -> list[str]:
    """Apply what fits this machine to a model placed on `device` for training, and to its optimizers;
    returns what was applied, in words, for the training log.

    `dtype` is the autocast precision, `compile` whether the loss is compiled, `rows` the tokens per
    micro-batch (None: unknown) -- what the oneDNN rule needs to know."""
    settings = settings or SpeedSettings()
    settings.check(dtype, compile)
    applied = []
    if device.type == "cpu":
        keep_freed_memory()
        use_sigmoid_gelu(model)
        if dtype == "float32" and not compile and _use_onednn(model, rows, settings.cpu_matmul):
            applied.append("float32 products by oneDNN")
    ns_dtype = set_muon_precision(optimizers, settings.muon_dtype, device)
    if ns_dtype is not None:
        applied.append(f"Newton-Schulz in {str(ns_dtype).removeprefix('torch.')}")
    return applied


def _use_onednn(model: nn.Module, rows: int | None, choice: str) -> bool:
    if choice == "onednn":
        if not onednn_available():
            raise ConfigError("cpu_matmul onednn: this PyTorch build has no oneDNN")
        use_onednn_linear(model)
        return True
    return choice == "auto" and rows is not None and use_onednn_where_it_pays(model, rows)
