"""modadd: (a + b) mod 97 -- the grokking experiment on a laptop.

Power et al. ("Grokking", 2022) trained a small transformer on a fraction of the 97 x 97 table of
a + b mod 97. The model first *memorises* its training pairs: train accuracy reaches 100% while
test accuracy stays near chance (1%). Much later -- with strong weight decay pushing towards the
simplest solution -- test accuracy suddenly climbs to 100%: the model has found the algorithm.
Nanda et al. (2023) showed what that algorithm is: the embeddings become sines and cosines of a
few frequencies, and addition becomes rotation (cos(w(a+b)) from products of cos(wa), sin(wb)).

Here: one transformer block, AdamW with weight decay 1.0 at a constant learning rate, and 30% of
all pairs for training.
`accuracy.png` plots train and test accuracy over the steps, so the late jump is visible.

Each number is one token (a `SymbolTokenizer` of "0".."96", "+", "="). The model reads
`a + b =` and is scored only on the token it writes after '='.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..errors import ConfigError, UsageError
from ..inspection import fourier_norms
from ..model import GPT, GPTConfig
from ..tokenizer import SymbolTokenizer
from .base import Batch, Task, TaskModel, TaskOption, score_last

# The page's guide to the Fourier view (`page_views`): what it is, what to notice, what to try.
FOURIER_GUIDE = {
    "what": "Each number 0..P-1 has an embedding vector. Read the P vectors as P samples of a signal and take its "
    "Fourier transform: each bar is how strongly the embeddings vary like a cosine and sine of that frequency "
    "around the circle of residues.",
    "notice": "While the model only memorises, the bars are low and even. As the test accuracy climbs, a handful "
    "of frequencies grow tall: the model adds on a circle, with rotations. They keep growing after the accuracy "
    "reaches 100%, while weight decay wears the rest down.",
    "try": "Move the step slider from the first snapshot to the last and watch when the tall bars appear; compare "
    "it with the step where test accuracy jumps on the curves.",
}


class ModularAddition(Task):
    name = "modadd"
    example_prompt = "12+34="  # the page's first prompt
    description = "(a + b) mod 97, the grokking experiment: memorise first, generalise much later"
    options = (
        TaskOption(
            "--train-fraction",
            "train_fraction",
            "fraction of the 97 x 97 pairs used for training (default 0.3)",
            type=float,
        ),
    )
    continues_text = False
    default_max_new_tokens = 1
    P = 97
    model_defaults = dict(
        block_size=4,  # a + b =
        n_layer=1,  # Nanda et al.'s one-layer model is enough to grok
        n_head=4,
        n_embd=128,
    )
    train_defaults = dict(
        batch_size=512,  # the 2,822 training pairs in a few batches: nearly full-batch, as in the papers
        lr=1e-3,  # Power et al.'s rate
        min_lr=1e-3,  # constant: the schedule must not end the run before it groks
        warmup_iters=10,
        max_iters=3000,  # room for the late jump from memorising to generalising (docs/lessons/10-grokking.md)
        max_time=600.0,  # a cap for slow machines
        weight_decay=1.0,  # strong decay is what pushes the model from memorising to the algorithm
        beta2=0.98,  # Power et al.'s
        eval_interval=100,  # accuracy every 100 steps draws the late jump
        eval_iters=4,
    )

    def __init__(self, train_fraction: float = 0.3) -> None:
        if (
            isinstance(train_fraction, bool)
            or not isinstance(train_fraction, (int, float))
            or not 0 < train_fraction < 1
        ):
            raise UsageError(f"--train-fraction must be between 0 and 1, got {train_fraction}")
        super().__init__(train_fraction=train_fraction)
        self.train_fraction = float(train_fraction)
        self.tokenizer = SymbolTokenizer([str(i) for i in range(self.P)] + ["+", "="])
        self.plus, self.equals = self.P, self.P + 1

    def prepare(self, data_path: str | None = None, tokenizer=None) -> None:
        if data_path is not None:
            raise UsageError("the modadd task makes its own data: it takes no --data")
        P = self.P
        pairs = torch.cartesian_prod(torch.arange(P), torch.arange(P))  # all P * P problems
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(97))
        n_train = int(self.train_fraction * len(pairs))
        self.pairs = {"train": pairs[order[:n_train]], "test": pairs[order[n_train:]]}

    def encode(self, pairs: torch.Tensor) -> torch.Tensor:
        a, b = pairs[:, 0], pairs[:, 1]
        plus, equals = torch.full_like(a, self.plus), torch.full_like(a, self.equals)
        return torch.stack([a, plus, b, equals, (a + b) % self.P], dim=1)

    def get_batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator) -> Batch:
        pairs = self.pairs[split]
        seq = self.encode(pairs[torch.randint(len(pairs), (batch_size,), generator=generator)])
        return seq[:, :-1], score_last(seq[:, 1:], 1)  # scored: the answer, predicted at '='

    def check_config(self, config: GPTConfig) -> None:
        if config.block_size < 4:
            raise ConfigError(f"modadd needs block_size >= 4, got {config.block_size}")

    @torch.no_grad()
    def metrics(self, model: TaskModel, device, full: bool = False) -> dict[str, float]:
        """Accuracy on every test pair and every training pair (one forward pass each)."""
        result = {}
        for split, key in (("test", "accuracy"), ("train", "train_accuracy")):
            seq = self.encode(self.pairs[split]).to(device)
            predicted = model.gpt(seq[:, :4])[:, -1].argmax(-1)
            result[key] = (predicted == seq[:, 4]).float().mean().item()
        return result

    @torch.no_grad()
    def page_views(self, gpt: GPT, device: torch.device) -> list[dict[str, Any]]:
        """The number embeddings' Fourier spectrum: flat while memorising, a few tall bars once grokked."""
        norms = fourier_norms(gpt.transformer.wte.weight.detach().cpu()[: self.P])
        title = "number embeddings: norm per Fourier frequency"
        x = list(range(self.P // 2 + 1))
        return [{"name": "fourier", "title": title, "x": x, "y": norms.tolist(), "guide": FOURIER_GUIDE}]

    def encode_prompt(self, text: str) -> list[int]:
        match = re.fullmatch(r"\s*(\d+)\s*\+\s*(\d+)\s*=\s*", text)
        if not match or not all(int(g) < self.P for g in match.groups()):
            raise UsageError(f"a modadd prompt is a+b= with a and b from 0 to {self.P - 1}, got {text!r}")
        return self.tokenizer.encode(text)
