"""Subword tokens: a byte-level BPE tokenizer trained with Hugging Face `tokenizers`.

Characters make a tiny vocabulary, but every token carries little: a model must spend many steps
(and much of its context) to see a word. Byte-pair encoding (Sennrich et al. 2016; GPT-2's
tokenizer) starts from the 256 byte values and repeatedly merges the most frequent adjacent pair
into a new token, until the vocabulary has `vocab_size` tokens: common words become one token, rare
ones a few. *Byte-level* means the alphabet is bytes, not characters, so any text -- accents, CJK,
emoji -- encodes, and nothing is ever unknown.

Training the merges is Hugging Face's Rust code (`tokenizers.trainers.BpeTrainer`), not ours: it is
fast and it is the file format the rest of the field reads. A run's tokenizer.json is then exactly
the file `tokenizers.Tokenizer.from_file` loads and that `transformers` ships with a model.

`HFTokenizer` wraps any `tokenizers.Tokenizer` (a BPE trained here, or one imported with a model)
behind tinyllm's tokenizer interface: `encode(text) -> list[int]`, `decode(ids) -> str`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from .errors import CheckpointError, UnknownCharacterError, UsageError

MIN_VOCAB = 257  # the 256 byte values, and at least one merge
MAX_VOCAB = 65_536  # more than a tiny model's data can fill: a typo (10x too many zeros), not a choice


class HFTokenizer:
    """A Hugging Face `tokenizers.Tokenizer` with tinyllm's interface."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def kind(self) -> str:
        """The model inside, e.g. "BPE" or "WordLevel"."""
        return json.loads(self.tokenizer.to_str())["model"]["type"]

    def encode(self, text: str) -> list[int]:
        try:
            return self.tokenizer.encode(text, add_special_tokens=False).ids
        except Exception as e:  # a character vocabulary (exported, then imported) meeting a new character
            unknown = sorted({c for c in text if self.tokenizer.token_to_id(c) is None})
            shown = ", ".join(repr(c) for c in unknown[:10]) or str(e)
            raise UnknownCharacterError(f"text contains characters the model has never seen: {shown}") from None

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def to_json(self) -> str:
        """The Hugging Face tokenizer.json format."""
        return self.tokenizer.to_str(pretty=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HFTokenizer:
        from tokenizers import Tokenizer

        try:
            return cls(Tokenizer.from_str(json.dumps(data)))
        except Exception as e:  # the Rust side raises plain Exceptions with its own message
            raise CheckpointError(f"invalid Hugging Face tokenizer: {str(e).splitlines()[0][:200]}") from None


def check_vocab_size(vocab_size: int) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise UsageError(
            f"--vocab-size must be an integer from {MIN_VOCAB} (the 256 bytes and one merge) to {MAX_VOCAB}, "
            f"got {vocab_size}"
        )


def train_bpe(
    texts: Iterable[str], vocab_size: int, *, lowercase: bool = False, progress: bool = True, log=print
) -> HFTokenizer:
    """A byte-level BPE tokenizer of `vocab_size` tokens learned from `texts` (the training split)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    check_vocab_size(vocab_size)
    tokenizer = Tokenizer(models.BPE())
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    # GPT-2's pre-tokenizer: split into words (a leading space belongs to the word) and map bytes to
    # printable characters; merges never cross a word boundary
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen in the text or not
        special_tokens=[],
        show_progress=progress,
    )
    start = time.perf_counter()
    tokenizer.train_from_iterator(texts, trainer=trainer)
    log(
        f"trained a byte-level BPE tokenizer: {tokenizer.get_vocab_size()} tokens in {time.perf_counter() - start:.1f}s"
    )
    return HFTokenizer(tokenizer)


def char_tokenizer_as_hf(chars: list[str], lowercase: bool) -> HFTokenizer:
    """tinyllm's character vocabulary as a Hugging Face tokenizer (for export): one token per
    character, the same ids, the same lowercasing, decoded by joining the characters."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token=None))
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
    tokenizer.decoder = decoders.Fuse()  # join without spaces
    return HFTokenizer(tokenizer)
