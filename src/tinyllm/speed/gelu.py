"""GPT-2's GELU, the same function computed through a sigmoid: cheaper to train with on a CPU.

GPT-2 (and so `GPT2LMHeadModel`, whose weights ours map onto) uses the tanh approximation of GELU:

    gelu(x) = 0.5 x (1 + tanh(u)),    u = sqrt(2/pi) (x + 0.044715 x^3)

and since 0.5 (1 + tanh(u)) = sigmoid(2u) for every u, that is exactly

    gelu(x) = x s,    s = sigmoid(2u)

PyTorch's CPU kernel for the tanh form evaluates tanh with a slow, high-precision vector routine in
the forward pass and again in the backward pass, which recomputes it from x. Timed directly on the
AMD EPYC CPUs this project trained on, that kernel (forward + backward, every block) is 7-11% of a
training step (PyTorch's profiler reports 15-22%, but it inflates element-wise work). A sigmoid is
far cheaper than that tanh, and once s is kept from the forward pass the derivative needs no tanh:

    d gelu / dx = s + x s (1 - s) 2u'(x),    2u'(x) = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2)

`SigmoidGELU` computes the forward in four passes over the activations and the backward in five,
keeping x, s and the output (which the next layer keeps anyway): one more activation per block than
PyTorch's GELU, which keeps x only (a quarter more activation memory for the model). The results
agree with PyTorch's to float32 rounding (tests). Alone, on one layer's activations, it takes about
half the time of PyTorch's kernel; inside a training step, where its extra passes over memory cost
more, about two thirds, which makes a step of the Shakespeare model about 4% faster.
`model.py` builds GPT-2's plain `nn.GELU(approximate="tanh")`. When the runtime places a model on
the CPU, `use_sigmoid_gelu(model)` turns those modules into `CpuTrainingGELU` (a subclass: same
module, same state_dict), which uses `SigmoidGELU` only where it pays, to train on a CPU; for
sampling and evaluation (no gradients: PyTorch's kernel is one pass, and single-token decoding is
bound by per-call costs) it calls PyTorch's own `F.gelu(x, approximate="tanh")`. docs/performance.md
gives the timings.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

TWO_C = 2 * math.sqrt(2 / math.pi)  # 2u = TWO_C (x + K x^3)
K = 0.044715


class SigmoidGELU(torch.autograd.Function):
    """GPT-2's GELU as x * sigmoid(2u), with its derivative written out (see the module docstring)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        two_c = torch.tensor(TWO_C, dtype=x.dtype, device=x.device)
        s = torch.addcmul(two_c, x, x, value=TWO_C * K)  # 1) 2c (1 + K x^2)
        s.mul_(x).sigmoid_()  # 2) s = sigmoid(2u)
        y = x * s  # 3) gelu(x)
        ctx.save_for_backward(x, s, y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, s, y = ctx.saved_tensors
        two_c = torch.tensor(TWO_C, dtype=x.dtype, device=x.device)
        slope = torch.addcmul(two_c, x, x, value=3 * K * TWO_C)  # 1) 2u'(x) = 2c (1 + 3 K x^2)
        slope.mul_(y)  # 2) x s 2u'(x)
        dydx = torch.addcmul(slope, slope, s, value=-1)  # 3) x s (1 - s) 2u'(x)
        return dydx.add_(s).mul_(grad)  # 4) + s, then the chain rule


class CpuTrainingGELU(nn.GELU):
    """`nn.GELU(approximate="tanh")` that trains through `SigmoidGELU` on a CPU, PyTorch's kernel otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        training_on_cpu = torch.is_grad_enabled() and x.requires_grad and x.device.type == "cpu"
        if training_on_cpu and x.dtype in (torch.float32, torch.float64):
            return SigmoidGELU.apply(x)
        return F.gelu(x, approximate="tanh")


def use_sigmoid_gelu(model: nn.Module) -> int:
    """Turn every `nn.GELU(approximate="tanh")` of `model` into a `CpuTrainingGELU`, in place; returns
    how many. Only the class changes: GELU has no parameters, and the function is the same."""
    count = 0
    for module in model.modules():
        if type(module) is nn.GELU and module.approximate == "tanh":
            module.__class__ = CpuTrainingGELU
            count += 1
    return count
