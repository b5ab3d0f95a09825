import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyllm.errors import CheckpointError, UnknownCharacterError
from tinyllm.tokenizer import CharTokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


def test_round_trip():
    tok = CharTokenizer.from_text(TEXT)
    assert tok.decode(tok.encode(TEXT)) == TEXT
    assert tok.chars == sorted(set(TEXT))


def test_lowercase_vocabulary_and_encoding():
    tok = CharTokenizer.from_text(TEXT, lowercase=True)
    assert "F" not in tok.chars and "f" in tok.chars
    assert tok.decode(tok.encode("BEFORE")) == "before"


def test_unknown_characters_are_named():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(UnknownCharacterError, match=r"'x', 'z'"):
        tok.encode("abxcz")


def test_json_round_trip():
    tok = CharTokenizer.from_text(TEXT, lowercase=True)
    again = CharTokenizer.from_dict(tok.to_dict())
    assert again.chars == tok.chars and again.lowercase
    with pytest.raises(CheckpointError):
        CharTokenizer.from_dict({"type": "bpe"})


@given(st.text(alphabet=sorted(set(TEXT)), max_size=200))
def test_round_trip_of_any_text_over_the_vocabulary(text):
    tok = CharTokenizer.from_text(TEXT)
    assert tok.decode(tok.encode(text)) == text
