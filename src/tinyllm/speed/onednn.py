"""Faster float32 matrix products for training on some x86 CPUs, through oneDNN.

A float32 `nn.Linear` on an x86 CPU runs on Intel MKL's sgemm. PyTorch also ships oneDNN, with its
own matrix kernels. Whether oneDNN is faster depends on the processor, not on the model:

- on a 2-core AMD EPYC Zen 5 (full-width AVX-512), MKL's sgemm ran at about 220 GFLOP/s and
  oneDNN's at 420-470, and training went 1.6-1.8x faster than Hugging Face's instead of ~1.2x;
- on a Zen 4 EPYC (AVX-512 executed as two 256-bit halves) and on a Zen 3 EPYC (no AVX-512),
  oneDNN did not pay: 0.4-1.3x on the reference product, noisy, mostly slower;
- on Intel CPUs MKL takes its own widest code path: on a 2-core Xeon (family 6 model 167, AVX-512
  and AMX) oneDNN ran at 0.56-0.85x of it on the models' products.

The products are the same float32 maths, summed in another order, so results agree to rounding
(tests check outputs and gradients).

`OneDNNLinear` is an `nn.Linear` whose three products (forward, and the two of the backward pass)
go through oneDNN (`torch.ops.mkldnn._linear_pointwise`, a private op of PyTorch's).
`use_onednn_linear(model)` turns a model's Linear layers into it, keeping the same parameters (so
weight tying holds) and the same state_dict. With `--cpu-matmul auto` the runtime does this when
`onednn_pays(rows, in, out, cpu)` says so, a fixed rule: the CPU is one of the kind where it was
measured to pay (`cpu.CpuInfo.onednn_is_faster`) and the model's largest product is big enough (on
small ones oneDNN's fixed cost per call wins: a 256x32x128 product ran at 0.6x). No timing decides
it, so a run makes the same choice every time on a machine, and a resumed run computes like the
original. `--cpu-matmul onednn` or `default` overrides the rule; `benchmarks/train_speed.py`
measures both on your machine.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cpu import CpuInfo, this_cpu


def onednn_available() -> bool:
    """Whether this PyTorch build has oneDNN and its dense linear kernel."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        torch.ops.mkldnn._linear_pointwise  # noqa: B018  (a lookup: raises if the op is missing)
    except (AttributeError, RuntimeError):
        return False
    return True


def _product(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b.T (+ bias), by oneDNN: a is (M, K), b is (N, K); the result is (M, N)."""
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


class _OneDNNLinearFunction(torch.autograd.Function):
    """y = x W^T + b, with the backward products written out: dx = dy W, dW = dy^T x, db = sum(dy)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        y = _product(x.reshape(-1, x.shape[-1]), weight, bias)
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        x, weight = ctx.saved_tensors
        dy = grad_y.reshape(-1, grad_y.shape[-1])
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _product(dy, weight.t()).view(x.shape)
        if ctx.needs_input_grad[1]:
            x2 = x.reshape(-1, x.shape[-1])
            # oneDNN first copies its left operand (transposed here) into a contiguous block, so put
            # the narrower of dy and x on the left: dW = dy^T x, or dW = (x^T dy)^T
            if dy.shape[1] <= x2.shape[1]:
                dw = _product(dy.t(), x2.t())
            else:
                dw = _product(x2.t(), dy.t()).t().contiguous()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy.sum(0)
        return dx, dw, db


MIN_ROWS = 32  # fewer rows (e.g. decoding one token per sequence): oneDNN's fixed cost per call loses


class OneDNNLinear(nn.Linear):
    """`nn.Linear` computed by oneDNN for float32 CPU tensors of at least `MIN_ROWS` rows.

    Anything else goes the usual way: other dtypes and devices, products of a few rows (sampling
    from a model just trained: 4 us by MKL against 17 us by oneDNN for one row here), and code being
    traced by torch.compile (inductor lowers the oneDNN op as if the weight were a constant).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.dtype != torch.float32
            or x.device.type != "cpu"
            or self.weight.dtype != torch.float32
            or x.numel() < MIN_ROWS * x.shape[-1]
            or torch.compiler.is_compiling()
        ):
            return F.linear(x, self.weight, self.bias)
        return _OneDNNLinearFunction.apply(x, self.weight, self.bias)


def use_onednn_linear(model: nn.Module) -> int:
    """Turn every plain `nn.Linear` of `model` into a `OneDNNLinear`, in place; returns how many.

    Only the class changes: parameters, buffers and state_dict keys stay the same.
    """
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = OneDNNLinear
            count += 1
    return count


def onednn_speedup(rows: int, in_features: int, out_features: int, repeats: int = 5) -> float:
    """How much faster oneDNN does one Linear layer's three training products than PyTorch's default
    path, on this machine (> 1: oneDNN wins). 0 if oneDNN is not available. For benchmarks and for
    deciding `--cpu-matmul` by hand: training never times anything to choose."""
    if not onednn_available():
        return 0.0
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, in_features, generator=g)
    w = torch.randn(out_features, in_features, generator=g)
    dy = torch.randn(rows, out_features, generator=g)

    def default() -> None:
        x @ w.t(), dy @ w, dy.t() @ x

    def onednn() -> None:
        _product(x, w), _product(dy, w.t()), _product(dy.t(), x.t())

    times: dict[str, list[float]] = {"default": [], "onednn": []}
    for i in range(repeats + 1):
        for name, fn in (("default", default), ("onednn", onednn)):  # alternate: noise hits both
            t0 = time.perf_counter()
            fn()
            if i > 0:  # the first round is a warm-up
                times[name].append(time.perf_counter() - t0)
    # the fastest of the repeats: noise from the rest of the machine only ever adds time
    return min(times["default"]) / min(times["onednn"])


MIN_MULTIPLY_ADDS = 2**24  # rows x in x out of the model's largest product; below it, keep the default


def onednn_pays(rows: int, in_features: int, out_features: int, cpu: CpuInfo | None = None) -> bool:
    """Whether float32 CPU training whose largest Linear product is this big should use oneDNN."""
    cpu = this_cpu() if cpu is None else cpu
    return cpu.onednn_is_faster and rows * in_features * out_features >= MIN_MULTIPLY_ADDS


def use_onednn_where_it_pays(model: nn.Module, rows: int, cpu: CpuInfo | None = None) -> bool:
    """`use_onednn_linear(model)` if `onednn_pays` for its largest Linear layer with `rows` tokens
    per batch on this CPU (or `cpu`); returns whether it did."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears or not onednn_available():
        return False
    largest = max(linears, key=lambda m: m.weight.numel())
    if not onednn_pays(rows, largest.in_features, largest.out_features, cpu):
        return False
    use_onednn_linear(model)
    return True
