"""Corpora on disk and random training windows drawn from them.

Finding a corpus, in this order:
1. `--data PATH`: a text file of your own (used as it is, no checksum: any text works).
2. `$TINYLLM_DATA_DIR/<corpus>/<file>`, e.g. `$TINYLLM_DATA_DIR/tinyshakespeare/input.txt`.
3. The cache, `$TINYLLM_CACHE_DIR` or `~/.cache/tinyllm`, downloading into it on first use.
Copies from 2 and 3 must match the published SHA-256, so a truncated download or a different file
is refused instead of silently training on the wrong text.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import DataError


@dataclass(frozen=True)
class Corpus:
    """A public text file: where it comes from and the checksum it must have."""

    name: str
    filename: str
    url: str
    sha256: str
    size: int

    @property
    def relative_path(self) -> Path:
        return Path(self.name) / self.filename


TINY_SHAKESPEARE = Corpus(
    name="tinyshakespeare",
    filename="input.txt",
    url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    size=1_115_394,
)


def cache_dir() -> Path:
    if os.environ.get("TINYLLM_CACHE_DIR"):
        return Path(os.environ["TINYLLM_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tinyllm"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify(path: Path, corpus: Corpus) -> None:
    """Refuse a file whose SHA-256 is not the corpus's."""
    digest = sha256_of(path)
    if digest != corpus.sha256:
        raise DataError(
            f"{path} is not {corpus.name}: its sha256 is {digest[:12]}..., expected {corpus.sha256[:12]}... "
            "(delete it to download again, or pass your own text with --data PATH)"
        )


def download(corpus: Corpus, dest: Path) -> None:
    """Download `corpus` to `dest` atomically: a partial download never takes the final name."""
    hint = (
        f"download {corpus.url} by hand and pass it with --data PATH, "
        f"or set TINYLLM_DATA_DIR to a folder holding {corpus.relative_path}"
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(corpus.url, timeout=30) as response:
            while chunk := response.read(1 << 16):
                out.write(chunk)
        verify(Path(tmp), corpus)
        os.replace(tmp, dest)
    except DataError as e:
        raise DataError(f"downloaded file failed its checksum ({e}); {hint}") from None
    except OSError as e:  # URLError and timeouts are OSErrors
        raise DataError(f"could not download {corpus.name} ({e}); {hint}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def find_corpus(corpus: Corpus, data_path: str | os.PathLike | None = None) -> Path:
    """The path of `corpus` on disk, following the order in the module docstring."""
    if data_path is not None:
        path = Path(data_path)
        if path.is_dir():
            path = path / corpus.relative_path if (path / corpus.relative_path).exists() else path / corpus.filename
        if not path.is_file():
            raise DataError(f"data file not found: {data_path}")
        return path
    if os.environ.get("TINYLLM_DATA_DIR"):
        path = Path(os.environ["TINYLLM_DATA_DIR"]) / corpus.relative_path
        if not path.is_file():
            raise DataError(f"TINYLLM_DATA_DIR is set but {path} does not exist")
        verify(path, corpus)
        return path
    path = cache_dir() / corpus.relative_path
    if not path.is_file():
        print(f"downloading {corpus.name} to {path} ...")
        download(corpus, path)
    verify(path, corpus)
    return path


def read_text(path: Path, min_chars: int = 2) -> str:
    """Read a UTF-8 text file, with a clear error for missing, binary, empty or too-short files."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start} is invalid)") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    if not text:
        raise DataError(f"{path} is empty")
    if len(text) < min_chars:
        raise DataError(f"{path} is too short: {len(text)} characters, need at least {min_chars}")
    return text


def split(tokens: torch.Tensor, test_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Train on the first part, test on the last `test_fraction` (a contiguous tail, as nanoGPT does)."""
    n_train = int(len(tokens) * (1 - test_fraction))
    return tokens[:n_train], tokens[n_train:]


def random_windows(
    tokens: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` random windows of `block_size` tokens and their targets (the same, shifted by one).

    All windows are gathered by one indexing operation: a (batch, block_size + 1) grid of positions
    `start + offset`, no Python loop per example.
    """
    if len(tokens) < block_size + 1:
        raise DataError(f"need at least block_size + 1 = {block_size + 1} tokens, have {len(tokens)}")
    starts = torch.randint(len(tokens) - block_size, (batch_size, 1), generator=generator)
    windows = tokens[starts + torch.arange(block_size + 1)]
    return windows[:, :-1], windows[:, 1:]
