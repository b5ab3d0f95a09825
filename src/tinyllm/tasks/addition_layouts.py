"""How an addition problem is written out as tokens: one layout per kind of position embedding.

Digits are their own token ids 0-9; `+` is 10 and `=` is 11. Both layouts write the answer least
significant digit first, as people add on paper: each answer digit then depends only on the two
digits of its column and the carry from the digit just written (Lee et al., "Teaching Arithmetic
to Small Transformers", 2023). Both give the answer a length fixed by the prompt, so the model never
decides where to stop: the prompt says how many digits to write.

**Padded** (for learned positions; N = --digits):

    1234567+89=   ->   0001234567+0000000089=65646210000
                       |-- a ---| |-- b ---| |-- sum --|  (N + 1 digits, backwards)

Every problem has the same 3N + 3 tokens, so digit i of a, digit i of b and digit i of the answer
are always the same distance apart, and learned position embeddings can route them with one fixed
attention pattern. But no longer problem fits: position 3N + 3 was never trained.

**Abacus** (for abacus positions, `positions.py`; L = the longer operand's length):

    1234567+89=   ->   7654321+9800000=65646210
                       |- a -| |- b -| |- sum -|  (all backwards; b padded to L; L + 1 digits)

Operands are written least significant digit first and the shorter one is padded to the longer's
length, so the k-th digit of every number is the 10^(k-1) column, and abacus positions (the place
of a digit in its number) line the columns up whatever L is: the same rule reads 3 digits or 30.
"""

from __future__ import annotations

import torch

from .addition_problems import add_digits
from .base import IGNORE

PLUS, EQUALS = 10, 11


class PaddedLayout:
    """Operands zero-padded to N digits, most significant first; N + 1 answer digits (learned positions)."""

    def __init__(self, digits: int) -> None:
        self.digits = digits
        self.longest = digits  # the longest operand a prompt may have
        self.block_size = 3 * digits + 2  # the longest input: prompt and all but the last answer digit

    def answer_length(self, length: int) -> int:
        return self.digits + 1

    def prompt(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Prompts (n, 2N + 2) for operands given as digit rows (n, L <= N), least significant first."""
        n, width = a.shape
        pad = lambda d: torch.nn.functional.pad(d, (0, self.digits - width)).flip(1)  # noqa: E731
        return torch.cat([pad(a), torch.full((n, 1), PLUS), pad(b), torch.full((n, 1), EQUALS)], dim=1)

    def sequences(self, a: torch.Tensor, b: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole problems (n, 3N + 3) and, per position, whether it is an answer digit."""
        a, b = (torch.nn.functional.pad(d, (0, self.digits - d.shape[1])) for d in (a, b))
        seq = torch.cat([self.prompt(a, b), add_digits(a, b)], dim=1)
        answer = torch.zeros_like(seq, dtype=torch.bool)
        answer[:, -(self.digits + 1) :] = True
        return seq, answer


class AbacusLayout:
    """Operands least significant first, padded to the longer's length L; L + 1 answer digits (abacus)."""

    def __init__(self, longest: int) -> None:
        self.longest = longest
        self.block_size = 3 * longest + 2

    def answer_length(self, length: int) -> int:
        return length + 1

    def prompt(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Prompts (n, 2L + 2) for operands given as digit rows (n, L), least significant first."""
        n = a.shape[0]
        return torch.cat([a, torch.full((n, 1), PLUS), b, torch.full((n, 1), EQUALS)], dim=1)

    def sequences(self, a: torch.Tensor, b: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole problems of different lengths, (n, 3W + 3) for digit rows (n, W), and per position
        whether it is an answer digit. Row i is 3L + 3 tokens long (L = lengths[i]), then `+` padding,
        which comes after everything the row's targets can see."""
        n, W = a.shape
        total = add_digits(a, b)
        p = torch.arange(3 * W + 3).expand(n, -1)
        L = lengths[:, None]
        take = lambda digits, at: digits.gather(1, at.clamp(0, digits.shape[1] - 1))  # noqa: E731
        seq = torch.full_like(p, PLUS)
        seq = torch.where(p < L, take(a, p), seq)
        seq = torch.where((p > L) & (p <= 2 * L), take(b, p - L - 1), seq)
        seq = torch.where(p == 2 * L + 1, EQUALS, seq)
        answer = (p > 2 * L + 1) & (p <= 3 * L + 2)
        seq = torch.where(answer, take(total, p - 2 * L - 2), seq)
        return seq, answer


def inputs_and_targets(seq: torch.Tensor, answer: torch.Tensor, scored: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token pairs from whole problems: targets outside the answer (`scored="answer"`) or past
    the problem's end (padding, in either case) are IGNORE."""
    x, y = seq[:, :-1], seq[:, 1:].clone()
    past_end = answer.flip(1).cumsum(1).flip(1) == 0  # nothing of the answer from here on
    keep = answer[:, 1:] if scored == "answer" else ~past_end[:, 1:]
    y[~keep] = IGNORE
    return x, y
