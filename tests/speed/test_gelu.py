"""GPT-2's GELU through a sigmoid (speed/gelu.py): the same function and derivative as PyTorch's tanh form."""

import torch
import torch.nn.functional as F

from tinyllm import GPT, GPTConfig
from tinyllm.speed.gelu import CpuTrainingGELU, SigmoidGELU, use_sigmoid_gelu


def inputs(dtype=torch.float32):
    torch.manual_seed(0)
    x = torch.cat([torch.randn(4000) * 3, torch.linspace(-30, 30, 600)]).to(dtype)  # the tails saturate
    return x.reshape(23, -1)


def test_forward_equals_pytorchs_tanh_gelu():
    x = inputs().requires_grad_()
    expected = F.gelu(x.detach().double(), approximate="tanh")
    ours = SigmoidGELU.apply(x).detach().double()
    theirs = F.gelu(x.detach(), approximate="tanh").double()
    assert (ours - expected).abs().max() < 2e-6
    assert (ours - expected).abs().max() <= 2 * (theirs - expected).abs().max() + 1e-7  # as close as PyTorch's


def test_backward_equals_pytorchs_tanh_gelu_backward():
    x = inputs().requires_grad_()
    grad = torch.randn_like(x)
    SigmoidGELU.apply(x).backward(grad)
    expected = torch.ops.aten.gelu_backward(grad.double(), x.detach().double(), approximate="tanh")
    assert (x.grad.double() - expected).abs().max() < 1e-5


def test_derivative_is_exact_in_float64():
    x = (torch.randn(64, dtype=torch.float64) * 2).requires_grad_()
    assert torch.autograd.gradcheck(SigmoidGELU.apply, (x,))
    assert torch.autograd.gradgradcheck(lambda t: F.gelu(t, approximate="tanh"), (x,))  # the reference is smooth


def test_module_uses_the_sigmoid_form_only_to_train_on_a_cpu():
    gelu = CpuTrainingGELU(approximate="tanh")
    x = inputs().requires_grad_()
    assert gelu(x).grad_fn.name() == "SigmoidGELUBackward"
    with torch.no_grad():  # sampling and evaluation: PyTorch's own kernel, bit for bit
        assert torch.equal(gelu(x), F.gelu(x, approximate="tanh"))
    assert torch.equal(gelu(x.detach()), F.gelu(x.detach(), approximate="tanh"))
    half = x.detach().bfloat16().requires_grad_()  # other precisions: PyTorch's kernel
    assert gelu(half).grad_fn.name() == "GeluBackward0"


def test_the_model_is_plain_gpt2_until_the_speed_package_swaps_its_gelus():
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=11))
    assert all(type(m) is torch.nn.GELU for m in model.modules() if isinstance(m, torch.nn.GELU))
    before = model.state_dict()
    assert use_sigmoid_gelu(model) == 2  # one per block
    assert all(type(b.mlp.gelu) is CpuTrainingGELU for b in model.transformer.h)
    assert model.state_dict().keys() == before.keys()


def test_a_training_step_matches_pytorchs_gelu():
    torch.manual_seed(1)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=11))
    use_sigmoid_gelu(model)
    tokens = torch.randint(11, (4, 16))
    logits = model(tokens)
    logits.square().mean().backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for block in model.transformer.h:
        block.mlp.gelu = torch.nn.GELU(approximate="tanh")
    reference = model(tokens)
    reference.square().mean().backward()
    assert torch.allclose(logits, reference, atol=1e-6)
    for mine, theirs in zip(ours, (p.grad for p in model.parameters()), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-6, rtol=1e-4)
