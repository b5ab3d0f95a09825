"""The character tokenizer: one token per distinct character of the training text.

Character-level models are the classic first language model (char-rnn, nanoGPT's shakespeare_char):
the vocabulary is tiny (65 characters for Shakespeare, 39 lowercased), so every token is readable
and the embedding table is small. Token ids follow the sorted order of the characters.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import CheckpointError, UnknownCharacterError


class CharTokenizer:
    """Maps text to token ids and back, one character per token."""

    def __init__(self, chars: list[str] | str, lowercase: bool = False) -> None:
        chars = list(chars)
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("a character vocabulary needs distinct single characters")
        self.chars = chars
        self.lowercase = lowercase
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str, lowercase: bool = False) -> CharTokenizer:
        """Build the vocabulary from every distinct character of `text` (after lowercasing)."""
        if lowercase:
            text = text.lower()
        return cls(sorted(set(text)), lowercase=lowercase)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def normalize(self, text: str) -> str:
        return text.lower() if self.lowercase else text

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; characters outside the vocabulary raise `UnknownCharacterError`."""
        text = self.normalize(text)
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted({c for c in text if c not in self.stoi})
            shown = ", ".join(repr(c) for c in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
            raise UnknownCharacterError(
                f"text contains {len(unknown)} character(s) the model has never seen: {shown}"
            ) from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    # ---- JSON (tokenizer.json in a run directory) ----

    def to_dict(self) -> dict[str, Any]:
        return {"type": "char", "chars": "".join(self.chars), "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharTokenizer:
        if not isinstance(data, dict) or data.get("type") != "char" or not isinstance(data.get("chars"), str):
            raise CheckpointError("not a tinyllm character tokenizer")
        try:
            return cls(data["chars"], lowercase=bool(data.get("lowercase", False)))
        except ValueError as e:
            raise CheckpointError(f"invalid tokenizer: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)
