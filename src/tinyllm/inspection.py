"""Looking inside a model: attention weights, the residual stream, the logit lens, the sampler's stages.

Training and sampling use PyTorch's fused attention kernel, which never materialises the attention
weights. This module recomputes one forward pass with the same maths written out, keeping what a
learner wants to see; `model.py` does not change and training does not slow down. Tests check that
it is the same maths: the attention rows sum to 1 and are zero above the diagonal, recombining them
with the values reproduces the model's logits to 1e-5, and the logit lens of the last block is the
model's own output.

- **Attention**: for each layer and head, a T x T matrix: row t is how much position t attends to
  each position <= t (softmax(q k^T / sqrt(head_dim)) with the causal mask).
- **Logit lens** (nostalgebraist, 2020): the residual stream after each block, read through the
  final LayerNorm and the output layer as if the model ended there: what would it predict so far?
- **Sampler stages**: the next-token distribution after each processor of `sampling.py`, in its
  order -- raw softmax, repetition penalty, temperature, top-k, top-p, min-p -- to see which tokens
  each filter removes and how the rest are renormalised.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .model import GPT
from .sampling import STAGES as SAMPLER_STAGES
from .sampling import SamplingParams, each_stage


@torch.no_grad()
def trace(model: GPT, idx: torch.Tensor) -> dict[str, Any]:
    """One forward pass over `idx` (1, T), written out: logits (T, V), attention (L, H, T, T) and the
    residual stream after the embeddings and after each block (L + 1, T, C)."""
    model.eval()
    T = idx.shape[1]
    tf = model.transformer
    x = tf.wte(idx) + model.position_embedding(idx)
    residuals, attention = [x[0]], []
    causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
    for block in tf.h:
        attn = block.attn
        B, _, C = x.shape
        q, k, v = attn.c_attn(block.ln_1(x)).view(B, T, 3, attn.n_head, C // attn.n_head).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])  # (1, H, T, T)
        weights = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(B, T, C)  # the heads side by side again
        x = x + attn.c_proj(y)
        x = x + block.mlp(block.ln_2(x))
        attention.append(weights[0])
        residuals.append(x[0])
    logits = model.lm_head(tf.ln_f(x))[0]
    return {"logits": logits, "attention": torch.stack(attention), "residuals": torch.stack(residuals)}


@torch.no_grad()
def logit_lens(model: GPT, residuals: torch.Tensor, top: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Each layer's prediction at each position: (L + 1, T, top) probabilities and token ids, from the
    residual stream read through the final LayerNorm and the output layer."""
    probs = model.lm_head(model.transformer.ln_f(residuals)).softmax(dim=-1)
    values, ids = probs.topk(top, dim=-1)
    return values, ids


STAGES = ("raw", *(stage.name for stage in SAMPLER_STAGES))  # the distribution before, then after each


@torch.no_grad()
def sampler_stages(logits: torch.Tensor, seq: torch.Tensor, params: SamplingParams) -> list[torch.Tensor]:
    """The next-token probabilities (V,) before and after each processor of `sampling.STAGES`, in order.

    `logits` (V,) are one position's; `seq` (T,) is the text so far (for the repetition penalty). A
    processor that is off leaves the distribution as it was. Temperature 0 (greedy) puts all the
    probability on the most likely token, as the sampler's argmax does."""
    raw = logits.float()[None]
    z, stages = raw, [raw.softmax(-1)]
    for _name, z in each_stage(raw, seq[None], params):  # noqa: B007  (z: the logits after the stage)
        stages.append(z.softmax(-1))
    if params.temperature == 0:  # greedy: the sampler takes the argmax of what the penalty left
        greedy = F.one_hot(z.argmax(-1), z.shape[-1]).float()
        stages += [greedy] * (len(STAGES) - len(stages))
    return [s[0] for s in stages]


def pca_2d(matrix: torch.Tensor) -> torch.Tensor:
    """Rows of `matrix` (N, C) projected on their two main directions (N, 2): a map of the embeddings."""
    centred = matrix.float() - matrix.float().mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T


def fourier_norms(embeddings: torch.Tensor) -> torch.Tensor:
    """For P number embeddings (P, C): how much of them each frequency k = 0 .. P//2 explains.

    After grokking, modular addition's embeddings are sines and cosines of a few frequencies (Nanda et
    al. 2023): their spectrum has a few tall bars where a memorising model's is flat."""
    spectrum = torch.fft.rfft(embeddings.float() - embeddings.float().mean(0), dim=0)  # (P//2 + 1, C)
    norms = spectrum.abs().pow(2).sum(-1).sqrt()
    return norms / norms.sum().clamp(min=1e-12)
