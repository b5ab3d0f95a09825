"""The character tokenizer: one token per distinct character of the training text.

Character-level models are the classic first language model (char-rnn, nanoGPT's shakespeare_char):
the vocabulary is tiny (65 characters for Shakespeare, 39 lowercased), so every token is readable
and the embedding table is small. Token ids follow the sorted order of the characters.
"""

from __future__ import annotations

import json
import re
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


class SymbolTokenizer:
    """A fixed vocabulary of whole symbols: numbers are one token each ("96" is one token).

    For tasks whose tokens are not characters, e.g. modular addition, where each of 0..96 is a
    single symbol the model learns an embedding for.
    """

    def __init__(self, symbols: list[str]) -> None:
        if len(set(symbols)) != len(symbols):
            raise ValueError("symbols must be distinct")
        self.symbols = list(symbols)
        self.stoi = {s: i for i, s in enumerate(self.symbols)}

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> list[int]:
        pieces = re.findall(r"\d+|\S", text)
        unknown = sorted({p for p in pieces if p not in self.stoi})
        if unknown:
            raise UnknownCharacterError(
                f"text contains symbols outside the vocabulary: {', '.join(map(repr, unknown[:10]))}"
            )
        return [self.stoi[p] for p in pieces]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.symbols[i] for i in ids)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "symbols", "symbols": self.symbols}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


def tokenizer_from_dict(data: Any):
    """Rebuild a tokenizer from its tokenizer.json contents: tinyllm's own formats, or a Hugging Face
    tokenizer.json (a BPE run's, or an imported model's; see `bpe.py`)."""
    if isinstance(data, dict) and "model" in data and "pre_tokenizer" in data:
        from .bpe import HFTokenizer

        return HFTokenizer.from_dict(data)
    if isinstance(data, dict) and data.get("type") == "symbols" and isinstance(data.get("symbols"), list):
        try:
            return SymbolTokenizer([str(s) for s in data["symbols"]])
        except ValueError as e:
            raise CheckpointError(f"invalid tokenizer: {e}") from None
    return CharTokenizer.from_dict(data)
