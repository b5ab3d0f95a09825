"""addition: a tiny GPT learns to add two numbers of up to 10 digits -- scored on the answer only.

The lesson of the original tinyLLM: trained with plain next-token loss over the whole sequence,
the model spends its effort predicting the *prompt* digits, which are random and cannot be
predicted (2.3 nats each, forever). The loss that works scores only what the model must output:
the answer digits. So `get_batch` marks every other target `IGNORE`, and the model's cross-entropy
skips them. `--loss full` trains the same model on every position, to see the difference.

What the user sees: `1234567+89=` in, `1234656` out. What the model sees depends on its positions
(`addition_layouts.py`): with GPT-2's learned positions, operands zero-padded to N = --digits so that
every column sits at a fixed distance; with `--positions abacus`, numbers written backwards and
positions that count places in a number, so that numbers longer than any seen in training can be
added (the length-generalisation lesson; up to 30 digits). Either way the answer is written least
significant digit first, and its length is fixed by the prompt.

Training problems come in kinds (`addition_problems.py`): random operands of 1..N digits, and every
edge class -- all nines, carries through every column, zeros, very different lengths, no carry.
The random test problems come from a separate seed and are never used for training; `tinyllm eval`
also scores the edge set, and `--lengths 1-30` the accuracy at each operand length.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..errors import ConfigError, UsageError
from ..model import GPT, GPTConfig
from ..sampling import SamplingParams, generate
from ..settings import int_range
from ..tokenizer import CharTokenizer
from .addition_layouts import EQUALS, AbacusLayout, PaddedLayout, inputs_and_targets
from .addition_problems import (
    EDGE_CLASSES,
    add_digits,
    draw_problems,
    edge_set,
    hash_pairs,
    held_out_problems,
    number_length,
    problems_of_length,
    same_digits,
    to_digits,
    zero_padded,
)
from .base import Batch, Task, TaskModel, TaskOption

LONGEST_ABACUS = 30  # the longest operand an abacus model of the default shape reads
# Abacus training: the share of batches whose operands are written zero-padded to random widths up
# to LONGEST_ABACUS. Without them a model trained on 10-digit numbers has never read a prompt longer
# than 32 tokens, and on longer ones its attention, spread over more keys, misses the right column.
LONG_PROMPTS = 0.25


_PROMPT = re.compile(r"^\s*(\d+)\s*\+\s*(\d+)\s*=\s*$")


def operands(text: str, longest: int, positions: str) -> tuple[str, str]:
    """The two numbers of a prompt like `123+45=`, without leading zeros; a clear error otherwise."""
    match = _PROMPT.match(text)
    if not match:
        raise UsageError(f"an addition prompt looks like 123+45= (digits, '+', digits, '='), got {text!r}")
    numbers = tuple(number.lstrip("0") or "0" for number in match.groups())
    for number in numbers:
        if len(number) > longest:
            trained = "was trained on" if positions == "learned" else "can read"
            raise UsageError(f"{number} has more than {longest} digits, the most this model {trained}")
    return numbers


# The page's guide to the per-digit view (`page_views`): what it is, what to notice, what to try.
DIGIT_ACCURACY_GUIDE = {
    "what": "{} random problems with {}-digit operands, answered greedily: the share of problems whose answer "
    "digit 1 (units), 2 (tens), ... is right. The answer is written least significant digit first, as you add by hand.",
    "notice": "The units digit needs no carry and is learned first; each later digit waits for the carry from the "
    "one before it, so the bars rise from left to right.",
    "try": "Play the step slider from the start and note the step at which each bar passes 0.9.",
}


class Addition(Task):
    name = "addition"
    example_prompt = "1234+5678="  # the page's first prompt
    description = "add two numbers of up to 10 digits (answer-only loss; --positions abacus: longer numbers too)"
    options = (
        TaskOption("--digits", "digits", "largest operand length in training (default 10)", type=int),
        TaskOption(
            "--loss",
            "loss",
            "answer (score the answer digits only) or full (every position)",
            type=str,
            choices=("answer", "full"),
        ),
    )
    reads_model_fields = ("positions",)  # the layout follows the model's positions
    continues_text = False
    test_size = 10_000
    train_defaults = dict(
        batch_size=128,  # problems are short (32 tokens): many per step for a smooth gradient
        optimizer="muon",  # learns the columns in far fewer steps than AdamW (docs/lessons/08-carries-and-edges.md)
        schedule="wsd",  # the peak rate for 80% of the budget, then decay
        lr=3e-3,  # high for a 0.4M-parameter model
        min_lr=1e-4,  # decay far: the last digits of accuracy come at a low rate
        warmup_iters=50,  # the first steps are noisy
        max_time=180.0,  # every edge problem and >= 99.9% of the test set in 3 minutes on a 2-core CPU
        max_iters=None,  # time, not steps, is the budget
        eval_interval=200,  # each evaluation also answers ~4,300 problems (test, training, edges)
        eval_iters=4,  # 4 x 128 problems per split: the loss is near 0 soon anyway
        weight_decay=0.1,  # AdamW's usual
    )

    def __init__(self, digits: int = 10, loss: str = "answer", positions: str = "learned") -> None:
        int_range(1, 15)("--digits", digits)
        if loss not in ("answer", "full"):
            raise UsageError(f"--loss must be 'answer' or 'full', got {loss!r}")
        super().__init__(digits=digits, loss=loss, positions=positions)
        self.digits = digits
        self.loss_kind = loss
        self.positions = positions
        self.tokenizer = CharTokenizer("0123456789+=")
        if positions == "abacus":
            self.layout = AbacusLayout(LONGEST_ABACUS)
            self.model_defaults = dict(
                block_size=self.layout.block_size,  # room for two 30-digit operands and their sum
                positions="abacus",
                abacus_size=LONGEST_ABACUS + 2,  # places 0 (not a digit) to 31 (30 digits; the answer shifted by one)
                abacus_marker=EQUALS,  # the answer's places are shifted by one (positions.py)
                n_layer=4,  # more depth than the padded layout: columns are found by matching places
                n_head=4,
                n_embd=128,
            )
            self.train_defaults = {
                **self.train_defaults,
                "max_time": 510.0,  # with the final evaluation, under 10 minutes on a 2-core CPU
                "eval_interval": 500,  # an evaluation answers ~4,300 problems: not too often
            }
        else:
            self.layout = PaddedLayout(digits)
            self.model_defaults = dict(
                block_size=self.layout.block_size,  # exactly one problem: a + b = sum
                n_layer=2,  # one layer to gather the digits, one to carry
                n_head=4,
                n_embd=128,
            )
        self.default_max_new_tokens = self.layout.answer_length(self.layout.longest)

    # ---------------------------------------------------------------- problems

    def prepare(self, data_path: str | None = None, tokenizer: CharTokenizer | None = None) -> None:
        if data_path is not None:
            raise UsageError("the addition task makes its own problems: it takes no --data")
        self.edges = edge_set(self.digits)
        edge_keys = hash_pairs(*torch.tensor([(a, b) for _, a, b in self.edges]).T)
        # the test set: distinct random problems, none of them an edge problem, never trained on
        size = min(self.test_size, 10 ** (2 * self.digits) // 10)
        self.test_a, self.test_b = held_out_problems(size, self.digits, edge_keys, seed=10_000 + self.digits)
        self.test_keys = hash_pairs(self.test_a, self.test_b).sort().values

    def draw_training_problems(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Problems of every kind, redrawing any that belong to the test set."""
        a, b = draw_problems(n, self.digits, generator)
        clash = torch.isin(hash_pairs(a, b), self.test_keys)
        while clash.any():
            a2, b2 = draw_problems(int(clash.sum()), self.digits, generator)
            a[clash], b[clash] = a2, b2
            clash = torch.isin(hash_pairs(a, b), self.test_keys)
        return a, b

    # ---------------------------------------------------------------- batches

    def get_batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator) -> Batch:
        if split == "train":
            a, b = self.draw_training_problems(batch_size, generator)
        else:
            pick = torch.randint(len(self.test_a), (batch_size,), generator=generator)
            a, b = self.test_a[pick], self.test_b[pick]
        lengths = torch.maximum(number_length(a), number_length(b))
        if split == "train" and self.positions == "abacus" and torch.rand(1, generator=generator) < LONG_PROMPTS:
            lengths = zero_padded(lengths, self.digits, self.layout.longest, generator)
        width = int(lengths.max())
        seq, answer = self.layout.sequences(to_digits(a, width), to_digits(b, width), lengths)
        return inputs_and_targets(seq, answer, self.loss_kind)

    def adopt(self, config: GPTConfig) -> None:
        if self.positions == "abacus":  # the table and the context set the longest number it reads
            self.layout.longest = min(config.abacus_size - 2, (config.block_size - 2) // 3)
            self.default_max_new_tokens = self.layout.answer_length(self.layout.longest)

    def check_config(self, config: GPTConfig) -> None:
        if config.positions != self.positions:
            raise ConfigError(f"the task was set up for {self.positions} positions, the model has {config.positions}")
        needed = 3 * self.digits + 2  # the longest training problem, less its last answer digit
        if config.block_size < needed:
            raise ConfigError(f"--digits {self.digits} needs block_size >= {needed}, got {config.block_size}")
        if self.positions == "abacus" and config.abacus_size < self.digits + 2:
            raise ConfigError(
                f"--digits {self.digits} needs abacus_size >= {self.digits + 2}, got {config.abacus_size}"
            )
        if config.vocab_size != self.tokenizer.vocab_size:
            raise ConfigError("the addition task needs its own 12-token vocabulary")

    # ---------------------------------------------------------------- answers and metrics

    @torch.no_grad()
    def written(
        self, model: TaskModel, a: torch.Tensor, b: torch.Tensor, device, batch_size: int = 1000
    ) -> torch.Tensor:
        """The model's greedy answers (n, answer length) to problems given as digit rows (n, L),
        least significant digit first; all rows share the operand length L."""
        gpt = model.gpt if isinstance(model, TaskModel) else model
        out = []
        for i in range(0, len(a), batch_size):
            prompt = self.layout.prompt(a[i : i + batch_size], b[i : i + batch_size]).to(device)
            answer_length = self.layout.answer_length(a.shape[1])
            out.append(generate(gpt, prompt, answer_length, SamplingParams(temperature=0))[:, prompt.shape[1] :].cpu())
        return torch.cat(out)

    def correct(self, model: TaskModel, a: torch.Tensor, b: torch.Tensor, device) -> torch.Tensor:
        """Whether the model gets each problem (a, b) right, for integer operands of any lengths."""
        lengths = torch.maximum(number_length(a), number_length(b))
        result = torch.zeros(len(a), dtype=torch.bool)
        for length in lengths.unique().tolist():  # one batch per length: prompts of equal length
            rows = (lengths == length).nonzero().squeeze(1)
            da, db = to_digits(a[rows], length), to_digits(b[rows], length)
            result[rows] = same_digits(self.written(model, da, db, device), add_digits(da, db))
        return result

    def metrics(self, model: TaskModel, device, full: bool = False) -> dict[str, Any]:
        """Exact-match accuracy on the test problems (a subset during training), on training problems,
        and on the edge set; `full` adds the accuracy per operand length and each edge class."""
        n = len(self.test_a) if full else min(2000, len(self.test_a))
        a, b = self.test_a[:n], self.test_b[:n]
        right = self.correct(model, a, b, device)
        result: dict[str, Any] = {"accuracy": right.float().mean().item()}
        ta, tb = self.draw_training_problems(n, torch.Generator().manual_seed(7))
        result["train_accuracy"] = self.correct(model, ta, tb, device).float().mean().item()
        kinds = [kind for kind, _, _ in self.edges]
        ea, eb = (torch.tensor(column) for column in zip(*[(x, y) for _, x, y in self.edges], strict=True))
        edge_right = self.correct(model, ea, eb, device)
        result["edge_accuracy"] = edge_right.float().mean().item()
        if full:
            lengths = torch.maximum(number_length(a), number_length(b))
            for length in range(1, self.digits + 1):
                if (lengths == length).any():
                    result[f"accuracy_{length}_digits"] = right[lengths == length].float().mean().item()
            result["test_problems"] = n
            for kind in EDGE_CLASSES:
                mask = torch.tensor([k == kind for k in kinds])
                result[f"edge_{kind}"] = edge_right[mask].float().mean().item()
            result["edge_problems"] = len(kinds)
            wrong = [f"{x}+{y}" for (_, x, y), ok in zip(self.edges, edge_right.tolist(), strict=True) if not ok]
            result["edge_wrong"] = wrong[:20]
        return result

    def accuracy_by_length(
        self, model: TaskModel, lengths: list[int], device, problems: int = 200
    ) -> dict[int, float | None]:
        """Exact match on `problems` random problems whose operands both have each length; None for a
        length this model refuses (longer than its layout reads)."""
        result: dict[int, float | None] = {}
        for length in lengths:
            if length > self.layout.longest:
                result[length] = None
                continue
            a, b = problems_of_length(length, problems)
            result[length] = same_digits(self.written(model, a, b, device), add_digits(a, b)).float().mean().item()
        return result

    def page_views(self, gpt: GPT, device: torch.device, problems: int = 500) -> list[dict[str, Any]]:
        """How often each answer digit (least significant first) is right, on random problems whose
        operands have the most digits the run was trained on: the units digit is learned first."""
        a, b = problems_of_length(self.digits, problems)
        truth = add_digits(a, b)
        accuracy = (self.written(gpt, a, b, device)[:, : truth.shape[1]] == truth).float().mean(0)
        title = "accuracy of each answer digit (least significant first)"
        guide = {**DIGIT_ACCURACY_GUIDE, "what": DIGIT_ACCURACY_GUIDE["what"].format(problems, self.digits)}
        x = list(range(1, truth.shape[1] + 1))
        return [{"name": "digit_accuracy", "title": title, "x": x, "y": accuracy.tolist(), "guide": guide}]

    # ---------------------------------------------------------------- prompts

    def encode_prompt(self, text: str) -> list[int]:
        a, b = operands(text, self.layout.longest, self.positions)
        width = max(len(a), len(b))
        rows = [torch.tensor([[int(d) for d in reversed(x)] + [0] * (width - len(x))]) for x in (a, b)]
        return self.layout.prompt(*rows)[0].tolist()

    def max_new_tokens(self, text: str) -> int:
        """The answer's length for this prompt: the model writes exactly that many digits."""
        a, b = operands(text, self.layout.longest, self.positions)
        return self.layout.answer_length(max(len(a), len(b)))

    def decode_completion(self, prompt: str, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids[: self.max_new_tokens(prompt)])
        if text.isdigit():
            return text[::-1].lstrip("0") or "0"  # un-reverse and drop the padding
        return text[::-1]
