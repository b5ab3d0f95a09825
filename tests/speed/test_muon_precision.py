"""Muon's Newton-Schulz products in bfloat16 only where the CPU multiplies bfloat16 (speed/muon_precision.py)."""

import pytest
import torch

from tinyllm import GPT, GPTConfig
from tinyllm.config import TrainConfig
from tinyllm.optim import make_optimizers
from tinyllm.speed import SpeedSettings, apply
from tinyllm.speed.cpu import CpuInfo
from tinyllm.speed.muon_precision import newton_schulz_dtype


@pytest.mark.parametrize(
    "choice, device, cpu, expected",
    [
        ("auto", "cpu", CpuInfo("AuthenticAMD", 25, frozenset({"avx512f", "avx512_bf16"})), torch.bfloat16),  # Zen 4
        ("auto", "cpu", CpuInfo("GenuineIntel", 6, frozenset({"amx_bf16"})), torch.bfloat16),  # AMX
        ("auto", "cpu", CpuInfo("AuthenticAMD", 25, frozenset({"avx2"})), torch.float32),  # Zen 3: emulated
        ("auto", "cpu", CpuInfo(), torch.float32),  # unknown CPU (no /proc/cpuinfo)
        ("auto", "cuda", CpuInfo("AuthenticAMD", 25, frozenset({"avx512_bf16"})), torch.float32),  # GPUs: unmeasured
        ("float32", "cpu", CpuInfo("AuthenticAMD", 25, frozenset({"avx512_bf16"})), torch.float32),
        ("bfloat16", "cpu", CpuInfo("AuthenticAMD", 25, frozenset({"avx2"})), torch.bfloat16),  # asked for: given
    ],
)
def test_muon_dtype_auto_picks_bfloat16_only_where_the_cpu_multiplies_it(choice, device, cpu, expected):
    assert newton_schulz_dtype(choice, torch.device(device), cpu) == expected


@pytest.mark.parametrize("choice", ["float32", "bfloat16"])
def test_apply_gives_muon_the_precision_and_says_so(choice):
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11))
    optimizers = make_optimizers(model, TrainConfig(optimizer="muon"), torch.device("cpu"))
    assert optimizers[1].ns_dtype == torch.float32  # plain Muon: float32 until told otherwise
    applied = apply(model, optimizers, torch.device("cpu"), settings=SpeedSettings(muon_dtype=choice))
    assert optimizers[1].ns_dtype == getattr(torch, choice)
    assert f"Newton-Schulz in {choice}" in applied


def test_a_bad_choice_is_a_clear_error():
    from tinyllm.errors import ConfigError

    with pytest.raises(ConfigError, match="muon_dtype"):
        SpeedSettings(muon_dtype="half")
