"""Moving weights between tinyllm's `GPT` and Hugging Face's `GPT2LMHeadModel`.

The architectures are the same, so the mapping is one-to-one: same names, same shapes, except that
GPT-2's original code used a "Conv1D" layer that stores linear weights transposed (in, out). This
is how the benchmarks run Hugging Face on exactly our weights, and how a test proves that our model
*is* GPT-2. Needs `transformers` (the `dev` extra); tinyllm itself never imports it.
"""

from __future__ import annotations

import torch

from .model import GPT, GPTConfig

# Linear layers that GPT-2 stores as Conv1D, i.e. with the weight transposed
_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def to_hf_gpt2(model: GPT):
    """A `transformers.GPT2LMHeadModel` with the same config and weights as `model`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = model.config
    hf_config = GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.block_size,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        activation_function="gelu_new",  # GELU, tanh approximation
        layer_norm_epsilon=1e-5,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    hf = GPT2LMHeadModel(hf_config)
    state = {}
    for name, tensor in model.state_dict().items():
        state[name] = tensor.t().contiguous() if name.endswith(_TRANSPOSED) else tensor
    if not cfg.bias:  # GPT-2 always has biases: zeros are the same function
        for name, tensor in hf.state_dict().items():
            if name.endswith(".bias") and name not in state:
                state[name] = torch.zeros_like(tensor)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith((".attn.bias", ".attn.masked_bias"))]  # causal-mask buffers
    if missing or unexpected:
        raise RuntimeError(f"weight mapping failed: missing {missing}, unexpected {unexpected}")
    return hf.to(model.transformer.wte.weight.device).eval()


def from_hf_gpt2(hf_model) -> GPT:
    """A tinyllm `GPT` with the weights of a `transformers.GPT2LMHeadModel`."""
    c = hf_model.config
    config = GPTConfig(
        vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd
    )
    model = GPT(config)
    ours = model.state_dict()
    state = {}
    for name, tensor in hf_model.state_dict().items():
        if name not in ours:
            continue  # causal-mask buffers of older transformers versions
        state[name] = tensor.t().contiguous() if name.endswith(_TRANSPOSED) else tensor
    model.load_state_dict(state, strict=True)
    return model.eval()
