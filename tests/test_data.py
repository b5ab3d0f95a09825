import dataclasses

import pytest
import torch

from tinyllm.data import TINY_SHAKESPEARE, find_corpus, random_windows, read_text, split
from tinyllm.errors import DataError


def test_shared_copy_is_found_and_verified(shakespeare_path):
    path = find_corpus(TINY_SHAKESPEARE)
    assert path.stat().st_size == TINY_SHAKESPEARE.size


def test_wrong_hash_is_refused(tmp_path, monkeypatch):
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("not shakespeare\n" * 100)
    monkeypatch.setenv("TINYLLM_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="sha256"):
        find_corpus(TINY_SHAKESPEARE)


def test_failed_download_says_how_to_pass_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYLLM_DATA_DIR", raising=False)
    monkeypatch.setenv("TINYLLM_CACHE_DIR", str(tmp_path))
    unreachable = dataclasses.replace(TINY_SHAKESPEARE, url="http://127.0.0.1:9/input.txt")  # nothing listens
    with pytest.raises(DataError, match="--data PATH"):
        find_corpus(unreachable)
    assert not list((tmp_path / "tinyshakespeare").iterdir())  # no partial file left behind


def test_data_flag_takes_any_text_file(tmp_path):
    own = tmp_path / "mine.txt"
    own.write_text("hello world")
    assert find_corpus(TINY_SHAKESPEARE, own) == own
    with pytest.raises(DataError, match="not found"):
        find_corpus(TINY_SHAKESPEARE, tmp_path / "missing.txt")


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"\xff\xfe\x00bad", "UTF-8"), (b"a", "too short")],
)
def test_bad_text_files(tmp_path, content, message):
    path = tmp_path / "f.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_text(path)


def test_split_keeps_the_last_tenth_for_test():
    tokens = torch.arange(100)
    train, test = split(tokens)
    assert train.tolist() == list(range(90)) and test.tolist() == list(range(90, 100))


def test_random_windows_are_consecutive_and_shifted():
    tokens = torch.arange(1000)
    x, y = random_windows(tokens, block_size=16, batch_size=64, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (64, 16)
    assert torch.equal(y, x + 1)  # targets are the next token
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)  # windows are contiguous
    assert len(set(x[:, 0].tolist())) > 50  # and start at random places
    with pytest.raises(DataError):
        random_windows(torch.arange(10), block_size=10, batch_size=1)
