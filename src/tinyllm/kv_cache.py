"""The key/value cache that makes generation cheap.

Without a cache, producing token n+1 re-runs the model over all n previous tokens. But in a causal
model the keys and values of earlier positions never change once computed, so we keep them: the
prompt is run once ("prefill"), and each later step feeds just the newest token, whose query
attends over the stored keys and values.

The buffers are allocated once, at full size (batch, heads, block_size, head_dim) per layer, and
filled in place: no `torch.cat` per step, no reallocation. `window_start` below is the policy for
going past block_size, shared by the cached and the uncached decode paths (see `sampling.py`).

`BatchKVCache` holds many generations at once, each at its own length, for the decode loop that
steps them together (`batching.py`).
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
        self.mask = None  # every row has the same length: no row's keys to hide (see BatchKVCache)

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
        self.lengths = None  # one length for every row (a `BatchKVCache` has one per row)

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


class BatchKVCache:
    """The caches of up to `max_batch` generations decoded together, each row at its own length.

    The active generations fill rows 0..rows-1, so that one step's batch is a plain view of the
    buffers. A generation is prefilled on its own, in a `KVCache` of one row, then copied in
    (`put`); when it ends, the last row moves into its place (`remove`). A step feeds every active
    row one token: each row writes its key and value at its own length, reads its position from
    it (`lengths`), and sees only its own keys (`mask`): the padding after a shorter row's keys
    is hidden, so each row's attention is what it would be alone.
    """

    def __init__(self, model: torch.nn.Module, max_batch: int) -> None:
        cfg = model.config
        weight = model.transformer.wte.weight
        shape = (max_batch, cfg.n_head, cfg.block_size + 1, cfg.n_embd // cfg.n_head)
        self.k = [torch.zeros(shape, dtype=weight.dtype, device=weight.device) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, dtype=weight.dtype, device=weight.device) for _ in range(cfg.n_layer)]
        self.all_lengths = torch.zeros(max_batch, dtype=torch.long, device=weight.device)
        self.layers = [_BatchLayer(self, i) for i in range(cfg.n_layer)]
        self.abacus_all = None  # abacus positions: an `AbacusState` of all `max_batch` rows
        if cfg.positions == "abacus":
            from .positions import AbacusState

            self.abacus_all = AbacusState.empty(max_batch, weight.device)
        self.rows = 0  # active generations, in rows 0..rows-1
        self.mask: torch.Tensor | None = None  # (rows, 1, 1, width), set by `begin_step`
        self.same_length: int | None = None  # the rows' length, when they all have one (`begin_step`)
        self.width = 0  # the keys a step reads: the longest row's, and the new one

    @property
    def lengths(self) -> torch.Tensor:
        return self.all_lengths[: self.rows]

    @property
    def length(self) -> int:
        """The longest row: the model checks that it stays within block_size."""
        return int(self.lengths.max()) if self.rows else 0

    @property
    def abacus(self):
        from .positions import AbacusState

        state = self.abacus_all
        return None if state is None else AbacusState(state.run[: self.rows], state.after_marker[: self.rows])

    @abacus.setter
    def abacus(self, state) -> None:
        self.abacus_all.run[: self.rows] = state.run
        self.abacus_all.after_marker[: self.rows] = state.after_marker

    def put(self, row: int, single: KVCache) -> None:
        """Copy a prefilled one-row cache into `row`: the next free row (which it takes) or an active one."""
        if row == self.rows:
            self.rows += 1
        for layer, cached in enumerate(single.layers):
            self.k[layer][row, :, : cached.length] = cached.k[0, :, : cached.length]
            self.v[layer][row, :, : cached.length] = cached.v[0, :, : cached.length]
        self.all_lengths[row] = single.length
        if self.abacus_all is not None:  # where the count stands after the prefill (nothing cached: at 0)
            self.abacus_all.run[row] = single.abacus.run[0] if single.abacus is not None else 0
            self.abacus_all.after_marker[row] = bool(single.abacus.after_marker[0]) if single.abacus else False

    def take(self, row: int) -> KVCache:
        """A copy of `row` as a one-row cache (`put` copies it back)."""
        length = int(self.all_lengths[row])
        _, n_head, positions, head_dim = self.k[0].shape
        like = dict(dtype=self.k[0].dtype, device=self.k[0].device)
        single = KVCache(len(self.k), 1, n_head, positions - 1, head_dim, **like)
        for layer, cached in enumerate(single.layers):
            cached.k[0, :, :length] = self.k[layer][row, :, :length]
            cached.v[0, :, :length] = self.v[layer][row, :, :length]
            cached.length = length
        if self.abacus_all is not None and length > 0:
            from .positions import AbacusState

            single.abacus = AbacusState(
                self.abacus_all.run[row : row + 1].clone(), self.abacus_all.after_marker[row : row + 1].clone()
            )
        return single

    def remove(self, row: int) -> int | None:
        """Free `row`: the last active row moves into it. Returns the row that moved (None: none did)."""
        last = self.rows - 1
        if row != last:
            n = int(self.all_lengths[last])
            for k, v in zip(self.k, self.v, strict=True):
                k[row, :, :n] = k[last, :, :n]
                v[row, :, :n] = v[last, :, :n]
            self.all_lengths[row] = self.all_lengths[last]
            if self.abacus_all is not None:
                self.abacus_all.run[row] = self.abacus_all.run[last]
                self.abacus_all.after_marker[row] = self.abacus_all.after_marker[last]
        self.rows = last
        return last if row != last else None

    def begin_step(self) -> None:
        """Before a one-token step of every active row: which keys each row will see. When every row
        is at the same length (the samples of one prompt), none has padding to hide: no mask, and
        the new keys go in as one slice."""
        longest, shortest = int(self.lengths.max()), int(self.lengths.min())
        self.same_length = longest if longest == shortest else None
        self.width = longest + 1
        if self.same_length is not None:
            self.mask = None
        else:
            positions = torch.arange(self.width, device=self.all_lengths.device)
            self.mask = (positions <= self.lengths[:, None])[:, None, None, :]  # (rows, 1, 1, width)

    def end_step(self) -> None:
        self.all_lengths[: self.rows] += 1


class _BatchLayer:
    """One layer's view of a `BatchKVCache`: what the attention layer calls."""

    def __init__(self, cache: BatchKVCache, layer: int) -> None:
        self.cache, self.layer = cache, layer

    @property
    def mask(self) -> torch.Tensor | None:
        return self.cache.mask

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store one token's `k`, `v` (rows, H, 1, D) at each row's own length; return every row's keys
        and values up to the longest (the mask hides what lies past a row's own)."""
        cache = self.cache
        if k.shape[2] != 1:
            raise ValueError("a batch of generations takes one token per row at a time")
        keys, values = cache.k[self.layer], cache.v[self.layer]
        n, at = cache.rows, cache.same_length
        if at is not None:
            keys[:n, :, at : at + 1] = k
            values[:n, :, at : at + 1] = v
        else:
            rows = torch.arange(n, device=k.device)
            keys[rows, :, cache.lengths] = k[:, :, 0]
            values[rows, :, cache.lengths] = v[:, :, 0]
        return keys[:n, :, : cache.width], values[:n, :, : cache.width]


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
