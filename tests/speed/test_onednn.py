"""oneDNN products for CPU training: the same maths as nn.Linear, chosen by a fixed rule."""

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tinyllm import GPT, GPTConfig
from tinyllm.config import TrainConfig
from tinyllm.errors import ConfigError
from tinyllm.runtime import Runtime
from tinyllm.speed import SpeedSettings
from tinyllm.speed.onednn import (
    MIN_ROWS,
    CpuInfo,
    OneDNNLinear,
    _OneDNNLinearFunction,
    onednn_available,
    onednn_pays,
    this_cpu,
    use_onednn_linear,
    use_onednn_where_it_pays,
)
from tinyllm.training import Trainer

from ..conftest import Regression, regression_batches

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this PyTorch build has no oneDNN")


@pytest.mark.parametrize("in_features,out_features", [(16, 48), (48, 16), (24, 24)])  # both dW branches
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(37,), (3, 11)])  # 2-D and 3-D inputs
def test_onednn_linear_matches_nn_linear(in_features, out_features, bias, shape):
    torch.manual_seed(0)
    plain = nn.Linear(in_features, out_features, bias=bias)
    fast = nn.Linear(in_features, out_features, bias=bias)
    fast.load_state_dict(plain.state_dict())
    assert use_onednn_linear(fast) == 1 and isinstance(fast, OneDNNLinear)
    x = torch.randn(*shape, in_features)
    x_plain, x_fast = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad_out = torch.randn(*shape, out_features)
    y_plain, y_fast = plain(x_plain), fast(x_fast)
    torch.testing.assert_close(y_fast, y_plain, rtol=1e-5, atol=1e-5)
    y_plain.backward(grad_out)
    y_fast.backward(grad_out)
    torch.testing.assert_close(x_fast.grad, x_plain.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.weight.grad, plain.weight.grad, rtol=1e-5, atol=1e-5)
    assert fast.weight.grad.shape == fast.weight.shape and fast.weight.grad.is_contiguous()
    if bias:
        torch.testing.assert_close(fast.bias.grad, plain.bias.grad, rtol=1e-5, atol=1e-5)


def test_few_rows_and_compiled_code_take_the_usual_path(monkeypatch):
    layer = nn.Linear(8, 4)
    use_onednn_linear(layer)
    calls = []
    monkeypatch.setattr(_OneDNNLinearFunction, "apply", lambda *args: calls.append(args) or F.linear(*args))
    layer(torch.randn(MIN_ROWS, 8))
    assert len(calls) == 1  # enough rows: oneDNN
    x = torch.randn(2, MIN_ROWS - 1, 8)[:1]  # e.g. one decoding step: too few rows to pay
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias)) and len(calls) == 1
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    layer(torch.randn(MIN_ROWS, 8))
    assert len(calls) == 1  # inside torch.compile: PyTorch's own product


def test_other_dtypes_take_the_usual_path():
    layer = nn.Linear(8, 4)
    use_onednn_linear(layer)
    x = torch.randn(3, 8, dtype=torch.float64)
    torch.testing.assert_close(layer.double()(x), F.linear(x, layer.weight, layer.bias))


def test_gpt_with_onednn_keeps_its_parameters_and_gradients():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=29, block_size=16, n_layer=2, n_head=2, n_embd=32)
    plain, fast = GPT(cfg), GPT(cfg)
    fast.load_state_dict(plain.state_dict())
    assert use_onednn_linear(fast) == 2 * 4 + 1  # 4 per block and the output layer
    assert fast.lm_head.weight is fast.transformer.wte.weight  # weight tying survives
    assert list(fast.state_dict()) == list(plain.state_dict())
    idx = torch.randint(29, (4, 16))
    for model in (plain, fast):
        F.cross_entropy(model(idx).flatten(0, 1), idx.flatten()).backward()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


ZEN5 = CpuInfo("AuthenticAMD", 26, frozenset({"avx2", "avx512f"}))
ZEN4 = CpuInfo("AuthenticAMD", 25, frozenset({"avx2", "avx512f"}))
ZEN3 = CpuInfo("AuthenticAMD", 25, frozenset({"avx2"}))
INTEL = CpuInfo("GenuineIntel", 6, frozenset({"avx2", "avx512f"}))


@pytest.mark.parametrize(
    "cpu, shape, expected",
    [
        (ZEN5, (2048, 96, 384), True),  # the Shakespeare model's largest product, on a Zen 5
        (ZEN5, (256, 32, 128), False),  # small products: oneDNN's fixed cost per call would lose
        (ZEN4, (2048, 96, 384), False),  # AVX-512 in two halves: measured not to pay
        (ZEN3, (2048, 96, 384), False),  # no AVX-512
        (INTEL, (2048, 96, 384), False),  # MKL takes its own best path on Intel
        (CpuInfo(), (2048, 96, 384), False),  # unknown (no /proc/cpuinfo): the default
    ],
)
def test_the_choice_is_a_fixed_rule_of_the_cpu_and_the_shape(cpu, shape, expected):
    assert onednn_pays(*shape, cpu) is expected


def test_auto_never_times_anything(monkeypatch):
    import tinyllm.speed.onednn as cpu_matmul

    def no_timing(*args, **kwargs):
        raise AssertionError("the choice must not depend on a timing")

    monkeypatch.setattr(cpu_matmul, "onednn_speedup", no_timing)
    model = nn.Sequential(nn.Linear(96, 384), nn.Linear(384, 96))
    expected = onednn_available() and cpu_matmul.this_cpu().onednn_is_faster
    assert use_onednn_where_it_pays(model, 2048) == expected
    assert use_onednn_where_it_pays(nn.Sequential(nn.Linear(96, 384)), 2048, ZEN5) == onednn_available()
    assert not use_onednn_where_it_pays(nn.Sequential(nn.Linear(96, 384)), 2048, ZEN4)


def test_this_cpu_reads_proc_cpuinfo():
    cpu = this_cpu()
    if Path("/proc/cpuinfo").exists():
        assert cpu.vendor and cpu.family > 0 and cpu.flags
    else:
        assert cpu == CpuInfo()


@pytest.mark.parametrize(
    "cpu_matmul,expected",
    [("onednn", "onednn"), ("default", "default"), ("auto", "default")],  # tiny: default
)
def test_trainer_applies_the_choice(cpu_matmul, expected):
    model = Regression()
    config = TrainConfig(max_iters=3, device="cpu")
    trainer = Trainer(
        model, regression_batches, config, runtime=Runtime(config, speed_settings=SpeedSettings(cpu_matmul))
    )
    assert ("float32 products by oneDNN" in trainer.runtime.speedups) == (expected == "onednn")
    assert isinstance(model.linear, OneDNNLinear) == (expected == "onednn")
    trainer.run(progress_bar=False)
    assert trainer.iter == 3


@pytest.mark.parametrize(
    "kw",
    [dict(cpu_matmul="fast"), dict(cpu_matmul="onednn", compile=True), dict(cpu_matmul="onednn", dtype="bfloat16")],
)
def test_bad_cpu_matmul_settings(kw):
    with pytest.raises(ConfigError, match="cpu_matmul"):
        settings = SpeedSettings(cpu_matmul=kw.pop("cpu_matmul"))
        Runtime(TrainConfig(**kw), speed_settings=settings)
