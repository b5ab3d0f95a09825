"""The GPT model: exactly GPT-2's architecture, small enough to train on a laptop.

Read this file top to bottom: a config, then attention, the MLP, a transformer block, and the
model that stacks them. It is the plain maths of a decoder-only transformer:

    tokens -> token embedding + position embedding
           -> n_layer x [ x + attn(ln_1(x)) ; x + mlp(ln_2(x)) ]     (pre-norm residual blocks)
           -> final LayerNorm -> logits through the *same* matrix as the token embedding

Every choice matches Hugging Face's `GPT2LMHeadModel` (GELU with the tanh approximation, LayerNorm
eps 1e-5, biases, weight tying, the initialisation), so our weights map one-to-one onto theirs
(`tinyllm.hf`). Generation lives elsewhere: `sampling.py` runs the decode loop and `kv_cache.py`
holds the attention cache; the only thing the model knows about it is the optional `kv_cache`
argument of `forward`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError
from .positions import POSITIONS, abacus_rows
from .settings import boolean, check_fields, fraction, from_dict, positive_int, setting

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from .kv_cache import BatchKVCache, KVCache, LayerKVCache


@dataclass
class GPTConfig:
    """The shape of a GPT. The defaults are a small model of 3 blocks, 128 wide, reading 256 tokens;
    each task sets its own (`Task.model_defaults`: the Shakespeare model is 96 wide).

    Each field is a `setting`: its help text and check also make the `tinyllm train` flag."""

    vocab_size: int = setting(65, "number of distinct tokens (set by the task's tokenizer)", positive_int, flag=False)
    block_size: int = setting(256, "context length in tokens (one learned embedding per position)", positive_int)
    n_layer: int = setting(3, "transformer blocks", positive_int)
    n_head: int = setting(4, "attention heads per block (must divide --n-embd)", positive_int)
    n_embd: int = setting(128, "width of the residual stream", positive_int)
    dropout: float = setting(0.0, "dropout probability (0 is best for tiny models trained for minutes)", fraction)
    bias: bool = setting(True, "biases in Linear and LayerNorm layers, as in GPT-2", boolean)
    positions: str = setting(
        "learned",
        "learned (GPT-2: one embedding per position) or abacus (a digit's place in its number; addition)",
        choices=POSITIONS,
    )
    abacus_size: int = setting(
        32, "abacus: rows of the position table (numbers of up to size - 2 digits)", positive_int
    )
    abacus_marker: int = setting(-1, "abacus: the token id after which the answer is written", flag=False)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                "each head gets n_embd / n_head dimensions"
            )
        if self.positions == "abacus" and not 0 <= self.abacus_marker < self.vocab_size:
            raise ConfigError("abacus positions need a task that names its answer marker (the addition task)")

    @property
    def position_rows(self) -> int:
        """Rows of the position table: one per position (learned) or per place in a number (abacus)."""
        return self.block_size if self.positions == "learned" else self.abacus_size

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GPTConfig:
        """Build a config from a dict (e.g. config.json), refusing keys it does not know."""
        return from_dict(cls, values, "model")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dropout_layer(p: float) -> nn.Module:
    """`nn.Dropout(p)`, or a no-op when p is 0 (the default): a Dropout layer costs a call even when it
    does nothing, and a one-token decoding step makes seven of them."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


class CausalSelfAttention(nn.Module):
    """Multi-head attention where each position looks only at itself and earlier positions."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        # one matrix computes queries, keys and values for all heads at once (GPT-2's c_attn)
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = dropout_layer(config.dropout)

    def forward(self, x: torch.Tensor, kv_cache: LayerKVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        # (B, T, 3C) -> three (B, n_head, T, head_dim) views: each head attends independently.
        # (Split, then transpose each: the backward pass then joins the three gradients with one
        # `cat`, where one permute of all three would cost an extra copy of the whole (B, T, 3C).)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        mask = None
        if kv_cache is not None:
            # Generation: store this step's keys/values and attend over everything cached so far.
            # The cache is either empty (a prompt of T tokens: causal) or gets one token (T == 1:
            # the new token may look at every cached position, so no causal mask is needed). Rows
            # decoded together from different lengths (`BatchKVCache`) each see only their own
            # keys: `mask` (B, 1, 1, L) says which; a cache of one length for all rows has none.
            k, v = kv_cache.update(k, v)
            mask = kv_cache.mask
        if T == 1 and kv_cache is not None and torch.compiler.is_compiling():
            # A compiled decode step (`sampling.CompiledDecodeStep`): one query over the cache,
            # written as the plain maths, which torch.compile fuses into a loop or two. The fused
            # kernel below is built for many queries; for a single one its fixed cost dominates.
            scores = (q * k).sum(dim=-1, keepdim=True) / math.sqrt(k.shape[-1])  # (B, n_head, L, 1)
            if mask is not None:
                scores = scores.masked_fill(~mask.transpose(-1, -2), float("-inf"))
            y = (scores.softmax(dim=2) * v).sum(dim=2, keepdim=True)  # (B, n_head, 1, head_dim)
        else:
            # scaled_dot_product_attention picks a fused kernel (flash attention where available):
            # softmax(q k^T / sqrt(head_dim)) v without materialising the T x T matrix in Python
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=T > 1,
            )
        y = y.transpose(1, 2).reshape(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network: widen 4x, GELU, project back."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's GELU: the tanh approximation
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = dropout_layer(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A transformer block. Pre-norm: LayerNorm *before* each sublayer keeps the residual path clean."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, kv_cache: LayerKVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), kv_cache)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """A GPT-2 style language model: `forward(idx)` maps token ids (B, T) to logits (B, T, vocab)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embedding
                wpe=nn.Embedding(config.position_rows, config.n_embd),  # position embedding (positions.py)
                drop=dropout_layer(config.dropout),
                h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                ln_f=nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: reading a token in and writing it out use one matrix. It saves
        # vocab_size * n_embd parameters and helps small models (Press & Wolf, 2017).
        self.lm_head.weight = self.transformer.wte.weight

        self.apply(self._init_weights)
        # GPT-2's scaled init: each block adds two residual projections to the stream, so their
        # weights shrink by 1/sqrt(2 * n_layer) to keep the stream's variance from growing with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (the tied output matrix counted once). `non_embedding` drops both embeddings."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel() + self.transformer.wpe.weight.numel()
        return n

    def position_embedding(self, idx: torch.Tensor, kv_cache: KVCache | BatchKVCache | None = None) -> torch.Tensor:
        """The position embeddings added to tokens `idx` (B, T): (T, C) for learned positions, which
        continue after the cache, or (B, T, C) for abacus positions, which depend on the tokens."""
        B, T = idx.shape
        start = kv_cache.length if kv_cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens is longer than block_size {self.config.block_size}")
        if self.config.positions == "learned":
            if kv_cache is not None and kv_cache.lengths is not None:  # rows at different lengths (batching.py)
                return self.transformer.wpe(kv_cache.lengths[:, None] + torch.arange(T, device=idx.device))
            return self.transformer.wpe.weight[start : start + T]  # positions start .. start+T-1
        rows = abacus_rows(idx, self.config.abacus_marker, self.config.abacus_size, kv_cache, self.training)
        return self.transformer.wpe(rows)  # positions.py: a digit's place in its number

    def forward(self, idx: torch.Tensor, kv_cache: KVCache | BatchKVCache | None = None) -> torch.Tensor:
        """Logits (B, T, vocab_size) for token ids `idx` (B, T). With a cache, positions continue after it."""
        x = self.transformer.drop(self.transformer.wte(idx) + self.position_embedding(idx, kv_cache))
        for i, block in enumerate(self.transformer.h):
            x = block(x, kv_cache.layers[i] if kv_cache is not None else None)
        x = self.transformer.ln_f(x)
        return self.lm_head(x)

    # ---- generation: thin front-ends over sampling.py (the engine knows only token ids) ----

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        *,
        stop: Sequence[Sequence[int]] | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        compile: bool = False,
        **sampler: Any,
    ) -> torch.Tensor:
        """Continue `idx` (B, T) by up to `max_new_tokens` sampled tokens; returns (B, T + new).

        `sampler`: temperature, top_k, top_p, min_p, repetition_penalty (`sampling.SamplingParams`);
        `temperature=0` is greedy decoding. `stop` is a list of token-id sequences: generation ends
        once every row has produced one of them. See `tinyllm.sampling` for the order in which the
        options apply. `compile=True` runs each cached one-token step through `torch.compile`: the
        same tokens, faster once compiled (the first call spends seconds compiling).
        """
        from .sampling import SamplingParams, generate

        params = SamplingParams.from_options(sampler)
        return generate(
            self, idx, max_new_tokens, params, stop=stop, use_cache=use_cache, generator=generator, compile=compile
        )

    @torch.no_grad()
    def stream(self, idx: torch.Tensor, max_new_tokens: int, **options: Any) -> Iterator[torch.Tensor]:
        """Like `generate`, but yields each step's new tokens (shape (B,)) as soon as they are sampled."""
        from .sampling import SamplingParams, stream

        sampler = {key: options.pop(key) for key in SamplingParams.names() if key in options}
        yield from stream(self, idx, max_new_tokens, SamplingParams.from_options(sampler), **options)
