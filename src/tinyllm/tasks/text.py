"""text: a language model of your own text -- a file, or a folder of .txt files.

    tinyllm train text --data my_notes.txt                         # characters, 5 minutes
    tinyllm train text --data corpus/ --tokenizer bpe --vocab-size 1024

The model reads `block_size` tokens and predicts the next one, scored on every position: the
plain language-model loss. The text is kept as it is, case included (`--lowercase` folds it); a
folder's `*.txt` files are read in sorted order and joined with a blank line. The last 10% of the
text (`--test-fraction`) is the test set.

Two tokenizers:
- **characters** (the default): one token per distinct character of the text. Any Unicode text
  works; the vocabulary is small and every token readable.
- **byte-level BPE** (`--tokenizer bpe --vocab-size N`, see `bpe.py`): trained on the training
  split only -- the test text must stay unseen, by the tokenizer too. Each token covers several
  characters, so the same context holds more text.

A loss per token is not comparable between the two (a BPE token carries more text than a
character), so evaluations also log `test_bits_per_char`: the test loss x tokens per character /
ln 2, the number of bits the model needs per character of test text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ..data import random_windows, read_text
from ..errors import ConfigError, DataError, UsageError
from ..model import GPTConfig
from .base import Batch, Task, TaskOption

LOWERCASE_OPTIONS = (
    TaskOption("--lowercase", "lowercase", "fold the text to lower case", store=True),
    TaskOption("--no-lowercase", "lowercase", "keep upper case", store=False),
)
TRAIN_FRACTION = TaskOption(
    "--train-fraction",
    "train_fraction",
    "train on the first F of the training split only (the test split unchanged): epochs pass quickly, to see overfitting",
    type=float,
)


def read_corpus(path: str | Path) -> str:
    """A UTF-8 file, or a folder's *.txt files in sorted order joined with a blank line."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"{path} holds no .txt files")
        text = "\n\n".join(_read_one(p) for p in files)
    elif path.is_file():
        text = _read_one(path)
    else:
        raise DataError(f"data file not found: {path}")
    return text


def _read_one(path: Path) -> str:
    text = read_text(path, min_chars=1)
    if "\x00" in text:  # valid UTF-8 can still be a binary file
        raise DataError(f"{path} looks binary, not text (a NUL byte at character {text.index(chr(0))})")
    return text


class Text(Task):
    name = "text"
    has_counting_baselines = True  # baselines.py: n-gram models of the same split, to compare against
    example_prompt = "The "  # the page's first prompt
    description = "a language model of your own text (--data FILE_OR_FOLDER; characters or BPE)"
    options = (
        *LOWERCASE_OPTIONS,
        TaskOption("--tokenizer", "tokenizer", "char (default) or bpe", type=str, choices=("char", "bpe")),
        TaskOption("--vocab-size", "vocab_size", "tokens of the BPE vocabulary (default 1024)", type=int),
        TaskOption("--test-fraction", "test_fraction", "the last part of the text held out (default 0.1)", type=float),
        TRAIN_FRACTION,
    )
    exports_to_hf = True
    # the Shakespeare model's shape and budget: a 5-minute CPU run (see shakespeare.py for the reasons)
    model_defaults = dict(block_size=256, n_layer=3, n_head=4, n_embd=96, dropout=0.0)
    train_defaults = dict(
        optimizer="muon",  # Shakespeare's recipe (see shakespeare.py)
        schedule="wsd",
        batch_size=8,
        lr=3e-3,
        muon_lr_scale=1.5,
        min_lr=3e-4,
        ema_decay=0.995,
        warmup_iters=50,
        max_time=300.0,
        max_iters=None,
        eval_interval=250,
        eval_iters=20,
    )

    def __init__(
        self,
        lowercase: bool = False,
        tokenizer: str = "char",
        vocab_size: int | None = None,
        test_fraction: float = 0.1,
        data: str | None = None,
        train_fraction: float = 1.0,
    ) -> None:
        if tokenizer not in ("char", "bpe"):
            raise UsageError(f"--tokenizer must be char or bpe, got {tokenizer!r}")
        if vocab_size is not None and tokenizer != "bpe":
            raise UsageError("--vocab-size is for --tokenizer bpe (a character vocabulary is the text's characters)")
        if tokenizer == "bpe":
            from ..bpe import check_vocab_size

            vocab_size = 1024 if vocab_size is None else vocab_size
            check_vocab_size(vocab_size)
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
            raise UsageError(f"--test-fraction must be a number between 0 and 1, got {test_fraction}")
        if (
            isinstance(train_fraction, bool)
            or not isinstance(train_fraction, (int, float))
            or not 0 < train_fraction <= 1
        ):
            raise UsageError(f"--train-fraction must be a number in (0, 1], got {train_fraction}")
        options: dict[str, Any] = dict(lowercase=lowercase, tokenizer=tokenizer, test_fraction=test_fraction)
        if train_fraction != 1:
            options["train_fraction"] = train_fraction
        if vocab_size is not None:
            options["vocab_size"] = vocab_size
        super().__init__(**options, data=data)
        self.lowercase, self.tokenizer_kind, self.vocab_size = lowercase, tokenizer, vocab_size
        self.test_fraction, self.data, self.train_fraction = float(test_fraction), data, float(train_fraction)

    def read_text(self, data_path: str | None) -> str:
        """The corpus: `--data`, or the path saved in the run (so that eval and --resume find it)."""
        path = data_path or self.data
        if path is None:
            raise UsageError("the text task trains on your text: give it with --data FILE_OR_FOLDER")
        text = read_corpus(path)
        self.data = self.task_options["data"] = str(Path(path).resolve())
        return text

    def prepare(self, data_path: str | None = None, tokenizer=None) -> None:
        text = self.read_text(data_path)
        text = text.lower() if self.lowercase else text
        n_train = int(len(text) * (1 - self.test_fraction))
        train_text, test_text = text[:n_train], text[n_train:]
        if tokenizer is not None:
            self.tokenizer = tokenizer
        elif self.tokenizer_kind == "bpe":
            from ..bpe import train_bpe

            # the training split only, in pieces of about 4,000 characters (the trainer counts words per piece)
            pieces = (train_text[i : i + 4096] for i in range(0, len(train_text), 4096))
            self.tokenizer = train_bpe(pieces, self.vocab_size, lowercase=self.lowercase)
        else:
            from ..tokenizer import CharTokenizer

            self.tokenizer = CharTokenizer.from_text(text, lowercase=self.lowercase)
        self.train_tokens = self._encode(train_text)
        self.train_tokens = self.train_tokens[: int(len(self.train_tokens) * self.train_fraction)]  # --train-fraction
        self.test_tokens = self._encode(test_text)
        self.test_chars_per_token = len(test_text) / max(1, len(self.test_tokens))

    def _encode(self, text: str) -> torch.Tensor:
        try:
            return torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
        except UsageError as e:  # a saved or --init tokenizer that does not fit this text
            raise DataError(f"the tokenizer does not fit this text: {e}") from None

    def check_config(self, config: GPTConfig) -> None:
        shortest = min(len(self.train_tokens), len(self.test_tokens))
        if shortest < config.block_size + 1:
            raise ConfigError(
                f"block_size {config.block_size} is too long for this data: the test split has "
                f"{len(self.test_tokens)} tokens and the training split {len(self.train_tokens)} "
                "(use a smaller --block-size or a longer text)"
            )
        if self.tokenizer.vocab_size > config.vocab_size:
            raise ConfigError(f"the tokenizer has {self.tokenizer.vocab_size} tokens, the model {config.vocab_size}")

    def get_batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator) -> Batch:
        tokens = self.train_tokens if split == "train" else self.test_tokens
        return random_windows(tokens, block_size, batch_size, generator)

    def epochs(self, tokens_seen: int) -> float | None:
        """How many times training has gone through the training tokens (on average)."""
        return tokens_seen / len(self.train_tokens)

    def loss_in_bits_per_char(self, loss: float) -> float | None:
        """A test loss (nats per token) as bits per character of test text."""
        return loss / self.test_chars_per_token / math.log(2)
