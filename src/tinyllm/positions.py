"""Which position each token reads its position embedding from: GPT-2's `learned` or `abacus`.

**learned** (GPT-2, the default): token t gets row t of the position table. Simple and exact, but a
model trained on sequences of 32 tokens has never trained rows 32 and up: it cannot read a longer
problem. Worse for arithmetic, "the 7th token" says nothing about a digit's *meaning*; the same
column of an addition lands on different rows for different operand lengths.

**abacus** (McLeish et al., "Transformers Can Do Arithmetic with the Right Embeddings", 2024): a
digit's position is its place in its own number, counted from 1 at its first digit. Numbers are
written least significant digit first, so position k means "the 10^(k-1) column" in every operand
and in the answer alike: the model finds the digits to add by matching equal positions, whatever
the numbers' lengths. Tokens that are not digits get position 0.

Three refinements, all learned from trying it:

- *Shifted answer.* The token that predicts answer digit k carries position k: the answer marker
  (`=`) gets 1 and the answer's own digit k gets k + 1. A query then looks for keys with its *own*
  position (the operand digits of column k), the pattern attention finds easiest.
- *The end of an operand.* The `+` after an operand takes the place after its last digit (L + 1
  for L digits). The token that predicts the final carry digit also carries L + 1, so it finds the
  `+` with its own position: "this is the column past the last one". Without it the model has to
  notice that *no* operand digit matches its position, and on long numbers, with attention spread
  over many more keys, that was its commonest mistake.
- *Random offset in training.* Each training sequence adds one random offset to all its nonzero
  positions, so that rows far beyond the longest trained number are trained too, and a number of
  30 digits reads rows that a number of 10 digits trained. `GPT.forward` draws it in training mode
  (from torch's global RNG, which checkpoints save: resume stays exact).

The rule reads only token ids: ids 0-9 are the digits 0-9 (the addition tokenizer's layout) and the
config names the answer marker. With a KV cache only the newest token is fed, so the rule also runs
on a chunk continuing from a saved `AbacusState` (the last token's run length and whether its run
follows the marker).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

DIGITS = 10  # token ids 0..9 are the digits 0..9
POSITIONS = ("learned", "abacus")


@dataclass
class AbacusState:
    """Where the last token left the count, per row: the length of its run of digits (0 after a
    non-digit) and whether that run follows the answer marker."""

    run: torch.Tensor  # (B,) long
    after_marker: torch.Tensor  # (B,) bool

    @classmethod
    def empty(cls, batch_size: int, device) -> AbacusState:
        return cls(
            torch.zeros(batch_size, dtype=torch.long, device=device),
            torch.zeros(batch_size, dtype=torch.bool, device=device),
        )


def abacus_positions(
    idx: torch.Tensor, marker: int, state: AbacusState | None = None
) -> tuple[torch.Tensor, AbacusState]:
    """Abacus position ids (B, T) for tokens `idx` (B, T), continuing from `state` (None: a fresh start).

    Returns the ids and the state after the last token. Example (`=` is the marker):

        tokens    3 2 1 + 5 4 0 = 8 6 1 0
        position  1 2 3 4 1 2 3 1 2 3 4 5
    """
    B, T = idx.shape
    state = state or AbacusState.empty(B, idx.device)
    t = torch.arange(T, device=idx.device).expand(B, T)
    digit = idx < DIGITS
    # 1. the last non-digit at or before each token (-1: none in this chunk)
    last_break = torch.where(digit, -1, t).cummax(dim=1).values
    fresh = last_break >= 0
    # 2. the length of the run of digits ending at each token (0 for a non-digit)
    run = torch.where(fresh, t - last_break, t + 1 + state.run[:, None])
    # 3. does that run follow the answer marker? (the marker itself counts as following it)
    opened_by = idx.gather(1, last_break.clamp(min=0))
    after_marker = torch.where(fresh, opened_by == marker, state.after_marker[:, None])
    positions = run + after_marker.long()
    # 4. a non-digit that ends an operand (the `+`) takes the place after its last digit
    previous_run = torch.cat([state.run[:, None], run[:, :-1]], dim=1)
    previous_after = torch.cat([state.after_marker[:, None], after_marker[:, :-1]], dim=1)
    ends_operand = ~digit & (idx != marker) & (previous_run > 0) & ~previous_after
    positions = torch.where(ends_operand, previous_run + 1, positions)
    return positions, AbacusState(run[:, -1], after_marker[:, -1])


def random_offsets(positions: torch.Tensor, table_size: int) -> torch.Tensor:
    """`positions` (B, T) with one random offset per row added to every nonzero position, drawn
    uniformly so that the row's largest position stays inside the table (the training trick above)."""
    room = table_size - positions.max(dim=1).values  # offsets 0 .. room-1 keep every id < table_size
    offset = (torch.rand(room.shape, device=positions.device) * room.clamp(min=1)).long()
    return torch.where(positions > 0, positions + offset[:, None], positions)


def abacus_rows(idx: torch.Tensor, marker: int, table_size: int, kv_cache: Any | None, training: bool) -> torch.Tensor:
    """The abacus rows (B, T) of the position table that tokens `idx` (B, T) read: counted on from the
    `AbacusState` a KV cache keeps (`kv_cache.abacus`, updated here), shifted by a random offset in
    training, and refused where a number is too long for the table."""
    start = kv_cache.length if kv_cache is not None else 0
    state = kv_cache.abacus if kv_cache is not None and start > 0 else None
    positions, state = abacus_positions(idx, marker, state)
    if kv_cache is not None:
        kv_cache.abacus = state  # where the next token's count continues
    if training:
        positions = random_offsets(positions, table_size)
    if not torch.compiler.is_compiling() and int(positions.max()) >= table_size:
        raise ValueError(f"a number is too long for the abacus table ({table_size} rows)")
    return positions
