"""The key/value cache that makes generation cheap.

Without a cache, producing token n+1 re-runs the model over all n previous tokens. But in a causal
model the keys and values of earlier positions never change once computed, so we keep them: the
prompt is run once ("prefill"), and each later step feeds just the newest token, whose query
attends over the stored keys and values.

The buffers are allocated once, at full size (batch, heads, block_size, head_dim) per layer, and
filled in place: no `torch.cat` per step, no reallocation. `window_start` below is the policy for
going past block_size, shared by the cached and the uncached decode paths (see `sampling.py`).
"""

from __future__ import annotations

import torch


class LayerKVCache:
    """Keys and values of one attention layer, filled left to right."""

    def __init__(self, batch_size: int, n_head: int, block_size: int, head_dim: int, *, dtype, device) -> None:
        # One spare position, never filled: the view of the filled part is then never the whole
        # buffer, so its memory layout is the same at every length (torch.compile would otherwise
        # compile a second decode step for the last position).
        shape = (batch_size, n_head, block_size + 1, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.block_size = block_size
        self.length = 0

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store `k`, `v` (B, H, T, D) after the cached positions; return all keys and values so far."""
        T = k.shape[2]
        if self.length > 0 and T != 1:
            # a chunk after cached tokens would need a rectangular causal mask; the decode loop
            # never does this (it prefills an empty cache, then adds one token at a time)
            raise ValueError("a non-empty KV cache takes one token at a time")
        end = self.length + T
        if end > self.block_size:
            raise ValueError(f"KV cache is full ({self.block_size} positions)")
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class KVCache:
    """One `LayerKVCache` per transformer block. `length` is how many positions are cached."""

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        block_size: int,
        head_dim: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.layers = [
            LayerKVCache(batch_size, n_head, block_size, head_dim, dtype=dtype, device=device) for _ in range(n_layer)
        ]
        self.abacus = None  # abacus positions only: where the digit count stands (`positions.AbacusState`)

    @classmethod
    def for_model(cls, model: torch.nn.Module, batch_size: int) -> KVCache:
        """A cache sized for `model` (a `GPT`), on the model's device and dtype."""
        cfg = model.config
        weight = model.transformer.wte.weight
        return cls(
            cfg.n_layer,
            batch_size,
            cfg.n_head,
            cfg.block_size,
            cfg.n_embd // cfg.n_head,
            dtype=weight.dtype,
            device=weight.device,
        )

    @property
    def length(self) -> int:
        return self.layers[0].length

    def reset(self) -> None:
        """Forget every cached position (the buffers are kept and overwritten)."""
        for layer in self.layers:
            layer.length = 0
        self.abacus = None


def window_start(seq_len: int, start: int, block_size: int, shift: int) -> int:
    """Where the model's context window begins, given the sequence so far (`seq_len` tokens).

    The model learned absolute positions 0..block_size-1, so cached keys cannot simply slide left
    by one when the context is full: each would need a new position embedding. Policy: while the
    window [start, seq_len) fits in block_size, it keeps growing (and the cache just appends). When
    it would overflow, the window jumps forward to keep only the most recent `block_size - shift`
    tokens (at least one), which the cache re-prefills at positions 0.. in one forward pass. A larger shift
    re-prefills less often but forgets more context at each jump; shift=1 is nanoGPT's "crop to
    the last block_size tokens" on every step (and so re-prefills every step).
    """
    if seq_len - start > block_size:
        return seq_len - max(1, block_size - shift)
    return start
