"""addition: a tiny GPT learns to add two numbers of up to 10 digits -- scored on the answer only.

The lesson of the original tinyLLM: trained with plain next-token loss over the whole sequence,
the model spends its effort predicting the *prompt* digits, which are random and cannot be
predicted (2.3 nats each, forever). The loss that works scores only what the model must output:
the answer digits. So `get_batch` marks every prompt target `IGNORE` (`score_last`), and the
model's cross-entropy skips them. `--loss full` trains the same model on every position, to see
the difference.

What the user sees: `1234567+89=` in, `1234656` out. What the model sees (N = --digits):

    0001234567+0000000089=65646210000
    |-- a ---| |-- b ---| |-- sum --|  (the sum is written backwards)

- Operands are zero-padded to N digits, so every digit has a fixed position: digit i of a, digit
  i of b and digit i of the answer are always the same distance apart, and the model's learned
  position embeddings can route them with a fixed attention pattern.
- The answer is written least significant digit first, as people add on paper: each output digit
  depends only on the two digits above it and the carry from the digit just written. Written most
  significant first, the first digit depends on every carry below it -- a much harder function
  (Lee et al., "Teaching Arithmetic to Small Transformers", 2023, found reversed output learned
  far faster and more reliably).
- The answer always has N + 1 digits (zero-padded), so no end token is needed.

Problems are drawn so that short operands and long carry chains (999..9 + 1) are common: operand
lengths are uniform in 1..N, one problem in ten is 99..9 + b and one in ten is a + (10^k - a).
The test problems come from a separate seed and are never used for training.
"""

from __future__ import annotations

import re

import torch

from ..errors import ConfigError, UsageError
from ..model import GPTConfig
from ..sampling import SamplingParams, generate
from ..settings import int_range
from ..tokenizer import CharTokenizer
from .base import Batch, Task, TaskModel, TaskOption, score_last

PLUS, EQUALS = 10, 11  # token ids: digits are their own ids 0-9


def _hash_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One int64 key per (a, b), for set membership. Collisions only ever exclude extra problems."""
    return (a % 2147483647) * 2147483648 + (b % 2147483648)


class Addition(Task):
    name = "addition"
    description = "add two numbers of up to 10 digits (loss on the answer only; exact-match accuracy)"
    options = (
        TaskOption("--digits", "digits", "largest operand length (default 10)", type=int),
        TaskOption(
            "--loss",
            "loss",
            "answer (score the answer digits only) or full (every position)",
            type=str,
            choices=("answer", "full"),
        ),
    )
    continues_text = False
    test_size = 10_000
    train_defaults = dict(
        batch_size=128,  # problems are short (32 tokens): many per step for a smooth gradient
        lr=3e-3,  # high for a 0.4M-parameter model
        min_lr=1e-4,  # decay far: the last digits of accuracy come at a low rate
        warmup_iters=50,  # Adam's first steps are noisy
        max_time=180.0,  # 100% on the test set within 3 minutes on a 2-core CPU
        max_iters=None,  # time, not steps, is the budget
        eval_interval=100,  # each evaluation also measures accuracy (2,000 greedy answers)
        eval_iters=4,  # 4 x 128 problems per split: the loss is near 0 soon anyway
        weight_decay=0.1,  # AdamW's usual
    )

    def __init__(self, digits: int = 10, loss: str = "answer") -> None:
        int_range(1, 15)("--digits", digits)
        if loss not in ("answer", "full"):
            raise UsageError(f"--loss must be 'answer' or 'full', got {loss!r}")
        super().__init__(digits=digits, loss=loss)
        self.digits = digits
        self.loss_kind = loss
        self.prompt_len = 2 * digits + 2  # a + b =
        self.answer_len = digits + 1
        self.default_max_new_tokens = self.answer_len
        self.model_defaults = dict(
            block_size=self.prompt_len + self.answer_len - 1,  # exactly one problem: a + b = sum
            n_layer=2,  # one layer to gather the digits, one to carry
            n_head=4,
            n_embd=128,
        )
        self.tokenizer = CharTokenizer("0123456789+=")

    # ---------------------------------------------------------------- problems

    def draw_problems(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` random problems (a, b) as int64 tensors, drawn as described in the module docstring."""
        N = self.digits
        lengths = torch.randint(1, N + 1, (2, n), generator=generator)
        scale = torch.pow(10.0, lengths.double())
        a, b = (torch.rand(2, n, generator=generator, dtype=torch.float64) * scale).long()
        kind = torch.rand(n, generator=generator)
        nines = 10 ** lengths[0] - 1
        a = torch.where(kind < 0.1, nines, a)  # 99..9 + b: a carry through every digit
        complement = (10 ** lengths[0] - a).clamp(max=10**N - 1)
        b = torch.where((kind >= 0.1) & (kind < 0.2), complement, b)  # a + (10^k - a) = 10^k
        return a, b

    def prepare(self, data_path: str | None = None, tokenizer: CharTokenizer | None = None) -> None:
        if data_path is not None:
            raise UsageError("the addition task makes its own problems: it takes no --data")
        # the test set: distinct problems from a seed of their own
        size = min(self.test_size, 10 ** (2 * self.digits) // 10)
        generator = torch.Generator().manual_seed(10_000 + self.digits)
        keys: dict[int, tuple[int, int]] = {}
        while len(keys) < size:
            a, b = self.draw_problems(size, generator)
            for ka, kb, key in zip(a.tolist(), b.tolist(), _hash_pairs(a, b).tolist(), strict=True):
                if len(keys) < size:
                    keys.setdefault(key, (ka, kb))
        pairs = torch.tensor(list(keys.values()), dtype=torch.long)
        self.test_a, self.test_b = pairs[:, 0], pairs[:, 1]
        self.test_keys = torch.tensor(sorted(keys), dtype=torch.long)

    def draw_training_problems(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random problems, redrawing any that belong to the test set."""
        a, b = self.draw_problems(n, generator)
        clash = torch.isin(_hash_pairs(a, b), self.test_keys)
        while clash.any():
            a2, b2 = self.draw_problems(int(clash.sum()), generator)
            a[clash], b[clash] = a2, b2
            clash = torch.isin(_hash_pairs(a, b), self.test_keys)
        return a, b

    # ---------------------------------------------------------------- encoding

    def digits_of(self, x: torch.Tensor, width: int) -> torch.Tensor:
        """(n,) integers -> (n, width) digits, least significant first."""
        powers = 10 ** torch.arange(width, dtype=torch.long)
        return (x[:, None] // powers) % 10

    def encode(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Token sequences (n, 3N + 3): padded a, +, padded b, =, reversed sum."""
        n, N = len(a), self.digits
        return torch.cat(
            [
                self.digits_of(a, N).flip(1),
                torch.full((n, 1), PLUS),
                self.digits_of(b, N).flip(1),
                torch.full((n, 1), EQUALS),
                self.digits_of(a + b, N + 1),
            ],
            dim=1,
        )

    def get_batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator) -> Batch:
        if split == "train":
            a, b = self.draw_training_problems(batch_size, generator)
        else:
            pick = torch.randint(len(self.test_a), (batch_size,), generator=generator)
            a, b = self.test_a[pick], self.test_b[pick]
        seq = self.encode(a, b)
        x, y = seq[:, :-1], seq[:, 1:]
        return x, (score_last(y, self.answer_len) if self.loss_kind == "answer" else y)

    # ---------------------------------------------------------------- model and metrics

    def check_config(self, config: GPTConfig) -> None:
        needed = self.prompt_len + self.answer_len - 1
        if config.block_size < needed:
            raise ConfigError(f"--digits {self.digits} needs block_size >= {needed}, got {config.block_size}")
        if config.vocab_size != self.tokenizer.vocab_size:
            raise ConfigError("the addition task needs its own 12-token vocabulary")

    @torch.no_grad()
    def answers(
        self, model: TaskModel, a: torch.Tensor, b: torch.Tensor, device, batch_size: int = 2000
    ) -> torch.Tensor:
        """The model's greedy answers to a + b, as integers (-1 where it wrote a non-digit)."""
        gpt = model.gpt if isinstance(model, TaskModel) else model
        out = []
        for i in range(0, len(a), batch_size):
            prompt = self.encode(a[i : i + batch_size], b[i : i + batch_size])[:, : self.prompt_len].to(device)
            digits = generate(gpt, prompt, self.answer_len, SamplingParams(temperature=0))[:, self.prompt_len :].cpu()
            powers = 10 ** torch.arange(self.answer_len, dtype=torch.long)
            value = (digits.clamp(max=9) * powers).sum(1)
            out.append(torch.where((digits > 9).any(1), -1, value))
        return torch.cat(out)

    def operand_length(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        longest = torch.maximum(a, b)
        return torch.where(longest == 0, 1, torch.floor(torch.log10(longest.clamp(min=1).double())).long() + 1)

    def metrics(self, model: TaskModel, device, full: bool = False) -> dict[str, float]:
        """Exact-match accuracy on the test problems (a subset during training), and on training problems."""
        n = len(self.test_a) if full else min(2000, len(self.test_a))
        a, b = self.test_a[:n], self.test_b[:n]
        correct = self.answers(model, a, b, device) == a + b
        result = {"accuracy": correct.float().mean().item()}
        ta, tb = self.draw_training_problems(n, torch.Generator().manual_seed(7))
        result["train_accuracy"] = (self.answers(model, ta, tb, device) == ta + tb).float().mean().item()
        if full:
            lengths = self.operand_length(a, b)
            for length in range(1, self.digits + 1):
                mask = lengths == length
                if mask.any():
                    result[f"accuracy_{length}_digits"] = correct[mask].float().mean().item()
            result["test_problems"] = n
        return result

    # ---------------------------------------------------------------- prompts

    _PROMPT = re.compile(r"^\s*(\d+)\s*\+\s*(\d+)\s*=\s*$")

    def encode_prompt(self, text: str) -> list[int]:
        match = self._PROMPT.match(text)
        if not match:
            raise UsageError(f"an addition prompt looks like 123+45= (digits, '+', digits, '='), got {text!r}")
        a, b = match.groups()
        for operand in (a, b):
            if len(operand.lstrip("0") or "0") > self.digits:
                raise UsageError(f"{operand} has more than {self.digits} digits, the most this model was trained on")
        seq = self.encode(torch.tensor([int(a)]), torch.tensor([int(b)]))
        return seq[0, : self.prompt_len].tolist()

    def decode_completion(self, prompt: str, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids)
        if len(text) == self.answer_len and text.isdigit():
            return text[::-1].lstrip("0") or "0"  # un-reverse and drop the padding
        return text[::-1]
