"""The addition problems: how training problems are drawn, and the edge set that evaluation adds.

Random problems are easy to get right and hide the hard ones: a sum that carries from the first
column into a new leading digit (9999999999 + 9999999999) turns up in a random test set about once
in ten billion. So the training draws come in kinds, one per *edge class*, and `tinyllm eval`
scores an edge set enumerated for every operand length 1..N besides the random test set:

- `nines`: all nines + all nines, at every pair of lengths (99 + 99999: carries at mixed lengths)
- `nines+1`: all nines + 1 and 1 + all nines (one carry rippling through every column)
- `zero`: 0 + x and x + 0
- `lengths`: operands of very different lengths (a 1- or 2-digit number and a long one)
- `carry`: a + (10^k - a): every column carries, into a new leading 1
- `no-carry`: every column sums to at most 9

A number is drawn "with k digits" uniformly from [0, 10^k) -- so short numbers are common -- except
where a class needs exactly k digits. All functions here are pure: the same generator state gives the
same problems.
"""

from __future__ import annotations

import torch

EDGE_CLASSES = ("nines", "nines+1", "zero", "lengths", "carry", "no-carry")
TRAINING_KINDS = ("random", *EDGE_CLASSES)
RANDOM_SHARE = 0.4  # of training problems; the other 60% are split evenly between the edge classes


def hash_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One int64 key per (a, b), for set membership. Collisions only ever exclude extra problems."""
    return (a % 2147483647) * 2147483648 + (b % 2147483648)


def number_length(x: torch.Tensor) -> torch.Tensor:
    """Digits in each integer of `x` (0 has one digit)."""
    lengths = torch.ones_like(x)
    for k in range(1, 19):
        lengths += (x >= 10**k).long()
    return lengths


def exactly(lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random number with exactly `lengths[i]` digits for each i (its first digit is not 0)."""
    low = torch.where(lengths == 1, 0, 10 ** (lengths - 1))
    high = 10**lengths
    return low + (torch.rand(lengths.shape, generator=generator, dtype=torch.float64) * (high - low)).long()


def up_to(lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random number below 10^lengths[i] for each i: at most that many digits."""
    return (torch.rand(lengths.shape, generator=generator, dtype=torch.float64) * 10.0**lengths).long()


def without_carry(a: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each a, a random b of a's length whose every digit keeps its column's sum at most 9."""
    b = torch.zeros_like(a)
    place, rest = 1, a.clone()
    for _ in range(int(number_length(a).max())):
        room = 9 - rest % 10  # the largest digit this column allows
        digit = (torch.rand(a.shape, generator=generator, dtype=torch.float64) * (room + 1)).long()
        b += torch.where(rest > 0, digit, 0) * place
        rest, place = rest // 10, place * 10
    return b


def draw_problems(n: int, digits: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` training problems (a, b) with operands of at most `digits` digits, of every kind."""
    la, lb = torch.randint(1, digits + 1, (2, n), generator=generator)
    a, b = up_to(la, generator), up_to(lb, generator)
    short_lengths = torch.randint(1, min(2, digits) + 1, (n,), generator=generator)  # 1 or 2 digits
    a_exact, short = exactly(la, generator), exactly(short_lengths, generator)
    nines_a, nines_b = 10**la - 1, 10**lb - 1
    share = (1 - RANDOM_SHARE) / len(EDGE_CLASSES)
    kind = ((torch.rand(n, generator=generator) - RANDOM_SHARE) / share).floor().long().clamp(min=-1)
    choices = {  # kind -> (a, b); kind -1 (RANDOM_SHARE of them) keeps the random pair
        0: (nines_a, nines_b),
        1: (nines_a, torch.ones_like(a)),
        2: (torch.zeros_like(a), b),
        3: (a_exact, short),
        4: (a_exact, (10**la - a_exact).clamp(max=10**digits - 1)),
        5: (a_exact, without_carry(a_exact, generator)),
    }
    for k, (ka, kb) in choices.items():
        a, b = torch.where(kind == k, ka, a), torch.where(kind == k, kb, b)
    swap = torch.rand(n, generator=generator) < 0.5  # every class in both orders
    return torch.where(swap, b, a), torch.where(swap, a, b)


def edge_set(digits: int, per_class: int = 3, seed: int = 0) -> list[tuple[str, int, int]]:
    """The edge problems for operand lengths 1..`digits`, as (class, a, b), each listed once, in a
    fixed order: the same list for the same arguments, on every machine."""
    generator = torch.Generator().manual_seed(seed)
    problems: list[tuple[str, int, int]] = []
    for k in range(1, digits + 1):
        nines = 10**k - 1
        problems += [("nines", nines, 10**j - 1) for j in range(1, digits + 1)]
        problems += [("nines+1", nines, 1), ("nines+1", 1, nines)]
        x = exactly(torch.full((per_class,), k), generator).tolist()
        problems += [("zero", v, 0) for v in x] + [("zero", 0, v) for v in x]
        if k >= 3:
            tiny = exactly(torch.randint(1, 3, (per_class,), generator=generator), generator).tolist()
            problems += [("lengths", v, t) for v, t in zip(x, tiny, strict=True)]
            problems += [("lengths", t, v) for v, t in zip(x, tiny, strict=True)]
        ending = [v if v % 10 else v + 1 for v in x]  # a last digit of 0 would not carry
        problems += [("carry", v, 10**k - v) for v in ending] + [("carry", nines, v) for v in ending]
        problems += [
            ("no-carry", v, w) for v, w in zip(x, without_carry(torch.tensor(x), generator).tolist(), strict=True)
        ]
    unique: dict[tuple[int, int], str] = {}
    for kind, a, b in problems:
        unique.setdefault((a, b), kind)
    return [(kind, a, b) for (a, b), kind in unique.items()]


def held_out_problems(size: int, digits: int, exclude: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`size` distinct random problems of up to `digits` digits, none of whose keys (`hash_pairs`) is
    in `exclude` (the edge set): the held-out test set, drawn from a seed of its own."""
    generator = torch.Generator().manual_seed(seed)
    keys: dict[int, tuple[int, int]] = {}  # a dict keeps the order drawn: the same set on every machine
    while len(keys) < size:
        a, b = draw_problems(size, digits, generator)
        drawn = hash_pairs(a, b)
        fresh = ~torch.isin(drawn, exclude)
        for ka, kb, key in zip(a[fresh].tolist(), b[fresh].tolist(), drawn[fresh].tolist(), strict=True):
            if len(keys) < size:
                keys.setdefault(key, (ka, kb))
    pairs = torch.tensor(list(keys.values()), dtype=torch.long)
    return pairs[:, 0], pairs[:, 1]


# ---- numbers as digits: past 18 digits an int64 overflows, so long problems live as digit rows ----


def to_digits(x: torch.Tensor, width: int) -> torch.Tensor:
    """(n,) integers -> (n, width) digits, least significant first."""
    powers = 10 ** torch.arange(min(width, 19), dtype=torch.long)
    digits = (x[:, None] // powers) % 10
    return torch.nn.functional.pad(digits, (0, width - digits.shape[1]))


def add_digits(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The sum of digit rows (n, W) + (n, W), least significant first, as (n, W + 1) digits."""
    total = torch.zeros(a.shape[0], a.shape[1] + 1, dtype=torch.long)
    carry = torch.zeros(a.shape[0], dtype=torch.long)
    for column in range(a.shape[1]):  # as on paper: one column at a time, carrying
        s = a[:, column] + b[:, column] + carry
        total[:, column], carry = s % 10, s // 10
    total[:, -1] = carry
    return total


def problems_of_length(length: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` random problems whose operands both have exactly `length` digits, as digit rows (n, length),
    least significant first (for `eval --lengths`; any length, no int64 limit)."""
    generator = torch.Generator().manual_seed(1_000 * seed + length)
    a, b = torch.randint(0, 10, (2, n, length), generator=generator)
    if length > 1:  # the leading digit is not 0
        a[:, -1], b[:, -1] = torch.randint(1, 10, (2, n), generator=generator)
    return a, b


def same_digits(written: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per row, whether two digit rows (least significant first) are the same number; either may
    carry leading zeros (the padded layout writes N + 1 digits for every sum)."""
    width = max(written.shape[1], truth.shape[1])
    pad = lambda d: torch.nn.functional.pad(d, (0, width - d.shape[1]))  # noqa: E731
    return (pad(written) == pad(truth)).all(dim=1)


def zero_padded(lengths: torch.Tensor, digits: int, longest: int, generator: torch.Generator) -> torch.Tensor:
    """Widths to write operands of `lengths` digits at, zero-padded: each row at random between its
    own length and one random width for the batch, from digits + 1 up to `longest`. The numbers keep
    their digits; the prompts grow as long as those a model reading `longest` digits will be asked."""
    widest = int(torch.randint(digits + 1, longest + 1, (1,), generator=generator))
    share = torch.rand(lengths.shape, generator=generator)
    return lengths + (share * (widest - lengths + 1)).long().clamp(min=0)
