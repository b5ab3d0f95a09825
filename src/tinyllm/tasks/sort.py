"""sort: put a list of digits in order -- `3141592653=` in, `1123455669` out.

Like addition, the prompt is random and cannot be predicted, so the model is scored only on the
sorted list it writes: `get_batch` marks the prompt's targets `IGNORE` (`score_last`). Sorting needs attention in a way addition does
not: to write the k-th smallest digit the model must look over the *whole* input and count, not
just read a fixed position. Test lists come from their own seed and never appear in training.
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

EQUALS = 10  # token id of '='; digits are their own ids


class Sort(Task):
    name = "sort"
    example_prompt = "3141592653="  # the page's first prompt
    description = "sort a list of digits (loss on the sorted output only; exact-match accuracy)"
    options = (TaskOption("--length", "length", "digits per list (default 10)", type=int),)
    continues_text = False
    test_size = 10_000
    train_defaults = dict(
        batch_size=128,  # lists are short (20 tokens): many per step
        lr=3e-3,  # high for a tiny model
        min_lr=1e-4,  # decay far for the last errors
        warmup_iters=50,  # Adam's first steps are noisy
        max_time=120.0,  # two minutes on a 2-core CPU
        max_iters=None,  # time, not steps, is the budget
        eval_interval=100,  # each evaluation also measures exact-match accuracy
        eval_iters=4,  # 4 x 128 lists per split
    )

    def __init__(self, length: int = 10) -> None:
        int_range(2, 18)("--length", length)
        super().__init__(length=length)
        self.length = length
        self.default_max_new_tokens = length
        self.model_defaults = dict(
            block_size=2 * length,  # the list, '=', and the sorted list less its last digit
            n_layer=2,  # one layer to count, one to pick
            n_head=4,
            n_embd=64,
        )
        self.tokenizer = CharTokenizer("0123456789=")

    def key(self, lists: torch.Tensor) -> torch.Tensor:
        """Each list of digits read as one integer: an exact key for set membership."""
        return (lists * 10 ** torch.arange(self.length)).sum(1)

    def prepare(self, data_path: str | None = None, tokenizer: CharTokenizer | None = None) -> None:
        if data_path is not None:
            raise UsageError("the sort task makes its own lists: it takes no --data")
        size = min(self.test_size, 10**self.length // 10)
        generator = torch.Generator().manual_seed(20_000 + self.length)
        distinct: dict[int, list[int]] = {}
        while len(distinct) < size:
            lists = torch.randint(10, (size, self.length), generator=generator)
            for row, key in zip(lists.tolist(), self.key(lists).tolist(), strict=True):
                if len(distinct) < size:
                    distinct.setdefault(key, row)
        self.test_lists = torch.tensor(list(distinct.values()), dtype=torch.long)
        self.test_keys = torch.tensor(sorted(distinct), dtype=torch.long)

    def draw_training_lists(self, n: int, generator: torch.Generator) -> torch.Tensor:
        lists = torch.randint(10, (n, self.length), generator=generator)
        clash = torch.isin(self.key(lists), self.test_keys)
        while clash.any():
            lists[clash] = torch.randint(10, (int(clash.sum()), self.length), generator=generator)
            clash = torch.isin(self.key(lists), self.test_keys)
        return lists

    def encode(self, lists: torch.Tensor) -> torch.Tensor:
        equals = torch.full((len(lists), 1), EQUALS)
        return torch.cat([lists, equals, lists.sort(dim=1).values], dim=1)

    def get_batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator) -> Batch:
        if split == "train":
            lists = self.draw_training_lists(batch_size, generator)
        else:
            lists = self.test_lists[torch.randint(len(self.test_lists), (batch_size,), generator=generator)]
        seq = self.encode(lists)
        return seq[:, :-1], score_last(seq[:, 1:], self.length)  # scored: the sorted list after '='

    def check_config(self, config: GPTConfig) -> None:
        if config.block_size < 2 * self.length:
            raise ConfigError(f"--length {self.length} needs block_size >= {2 * self.length}, got {config.block_size}")

    @torch.no_grad()
    def outputs(self, model: TaskModel, lists: torch.Tensor, device) -> torch.Tensor:
        prompt = self.encode(lists)[:, : self.length + 1].to(device)
        return generate(model.gpt, prompt, self.length, SamplingParams(temperature=0))[:, self.length + 1 :].cpu()

    def metrics(self, model: TaskModel, device, full: bool = False) -> dict[str, float]:
        n = len(self.test_lists) if full else min(2000, len(self.test_lists))
        test = self.test_lists[:n]
        train = self.draw_training_lists(n, torch.Generator().manual_seed(7))
        exact = lambda lists: (self.outputs(model, lists, device) == lists.sort(1).values).all(1).float().mean().item()  # noqa: E731
        result = {"accuracy": exact(test), "train_accuracy": exact(train)}
        if full:
            result["test_lists"] = n
        return result

    def encode_prompt(self, text: str) -> list[int]:
        match = re.fullmatch(r"\s*(\d+)\s*=\s*", text)
        if not match or len(match.group(1)) != self.length:
            raise UsageError(
                f"a sort prompt is {self.length} digits and '=', e.g. {'3141592653'[: self.length]}=, got {text!r}"
            )
        return self.tokenizer.encode(match.group(1) + "=")
