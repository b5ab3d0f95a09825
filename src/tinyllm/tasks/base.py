"""What a task is: data + tokenizer + model defaults + *its own loss*.

A task is the unit of the collection. `tinyllm train NAME` looks one up by name, asks it for a
tokenizer and batches, builds a GPT of the task's default shape, and trains the task's `TaskModel`
-- a thin `nn.Module` around the GPT whose `loss(batch)` decides what counts as a mistake.

Which predictions count is said once, in the batch: a target of `IGNORE` (-1) is not scored, as in
minGPT's adder. The plain language model scores every next token; the addition task marks the
prompt's targets `IGNORE` and so is scored on the answer digits only (`score_last`). One
cross-entropy serves every task. A task whose loss is something else entirely sets `model_class`
to its own `TaskModel` subclass: that is the one way to choose a task's model.

To write a task, subclass `Task`, then `register` it (see `tinyllm/tasks/__init__.py`). docs/reference.md
walks through one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model import GPT, GPTConfig
from ..runtime import Batch
from ..tokenizer import CharTokenizer

IGNORE = -1  # a target that the loss does not score


def score_last(targets: torch.Tensor, n: int) -> torch.Tensor:
    """A copy of `targets` (B, T) in which only the last `n` positions are scored (the rest: IGNORE)."""
    scored = targets.clone()  # targets usually share memory with the inputs: never write into them
    scored[:, : targets.shape[1] - n] = IGNORE
    return scored


class TaskModel(nn.Module):
    """A GPT and the loss its task trains it with: next-token cross-entropy on the scored targets."""

    def __init__(self, gpt: GPT) -> None:
        super().__init__()
        self.gpt = gpt

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.gpt(idx)

    def loss(self, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy of predicting y[t] from x[..t], over every target that is not IGNORE."""
        x, y = batch
        logits = self.gpt(x)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=IGNORE)


@dataclass(frozen=True)
class TaskOption:
    """A task-specific command-line flag, e.g. `--no-lowercase` for Shakespeare."""

    flag: str  # "--digits"
    dest: str  # the keyword the task's constructor takes
    help: str
    type: Any = None  # a parser for the value (int, a choice checker, ...); None for on/off flags
    choices: tuple[str, ...] | None = None
    store: Any = None  # for on/off flags: the value the flag stores


class Task:
    """Base class of tasks. Subclasses set the class attributes and implement the methods below."""

    name: ClassVar[str]
    description: ClassVar[str]  # one line, shown by `tinyllm tasks`
    options: ClassVar[tuple[TaskOption, ...]] = ()
    model_defaults: ClassVar[dict[str, Any]] = {}  # GPTConfig fields this task sets
    train_defaults: ClassVar[dict[str, Any]] = {}  # TrainConfig fields this task sets
    model_class: ClassVar[type[TaskModel]] = TaskModel
    # model fields the task is also given, for tasks whose data depends on them (addition's layout
    # follows `positions`); `tinyllm train` passes them to the constructor and saves them with it
    reads_model_fields: ClassVar[tuple[str, ...]] = ()

    tokenizer: CharTokenizer

    def __init__(self, **options: Any) -> None:
        self.task_options = options  # saved in config.json so `eval` can rebuild the task

    # -- data --
    def prepare(self, data_path: str | None = None, tokenizer: CharTokenizer | None = None) -> None:
        """Load or generate the data and set `self.tokenizer` (reusing `tokenizer` from a saved run)."""
        raise NotImplementedError

    def get_batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator) -> Batch:
        """A training batch from `split` ("train" or "test"), on the CPU."""
        raise NotImplementedError

    # -- model --
    def build_model(self, config: GPTConfig) -> TaskModel:
        return self.wrap(GPT(config))

    def wrap(self, gpt: GPT) -> TaskModel:
        """The task's model around a GPT (`model_class`): this is where the task's loss comes in."""
        return self.model_class(gpt)

    def check_config(self, config: GPTConfig) -> None:
        """Raise `ConfigError` if the model cannot do this task (e.g. a context too short)."""

    def adopt(self, config: GPTConfig) -> None:
        """Take from the model's config what the task depends on (addition: the longest number its
        positions can place). Called when a run is trained or loaded."""

    @torch.no_grad()
    def metrics(self, model: TaskModel, device: torch.device, full: bool = False) -> dict[str, float]:
        """Task-specific evaluation (e.g. exact-match accuracy), logged at each eval. None by default.

        `full` is set by `tinyllm eval`: evaluate on everything, not the quick subset used in training.
        """
        return {}

    def page_views(self, gpt: GPT, device: torch.device) -> list[dict[str, Any]]:
        """The task's own pictures on `tinyllm serve`'s page, beside the embeddings: bar charts
        `{"name", "title", "x": [...], "y": [...], "guide": {"what", "notice", "try"}}` (the guide's
        words for the view: what the numbers are, what to notice, what to try). None by default."""
        return []

    def epochs(self, tokens_seen: int) -> float | None:
        """Passes over the training data after `tokens_seen` tokens (None: the task draws fresh problems)."""
        return None

    def loss_in_bits_per_char(self, loss: float) -> float | None:
        """A test loss (nats per token) in bits per character of text, for text tasks (None: not text)."""
        return None

    # -- prompts: the user's text <-> what the model reads and writes --
    def encode_prompt(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode_completion(self, prompt: str, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def max_new_tokens(self, text: str) -> int:
        """How many tokens to generate for `text` when the caller does not say."""
        return self.default_max_new_tokens

    default_max_new_tokens: int = 500
    example_prompt: ClassVar[str] = ""  # what the page's prompt box starts with
    # True for tasks whose data is one text, split in two: `tinyllm eval` then counts n-gram baselines
    # on its training tokens (`baselines.py`; the task has `train_tokens` and `test_tokens`)
    has_counting_baselines: ClassVar[bool] = False
    # True when a plain tokenizer reads the task's prompts (text, shakespeare): `tinyllm export` can
    # then write a Hugging Face model folder of the run
    exports_to_hf: ClassVar[bool] = False
    # True when a completion simply continues the prompt's text (shakespeare): the CLI then echoes
    # the prompt and streams characters as they come. False for answer tasks (addition), whose
    # answer is decoded once complete.
    continues_text: ClassVar[bool] = True
