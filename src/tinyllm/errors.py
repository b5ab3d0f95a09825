"""The errors a user can cause, and how the command line reports them.

Anything a person can get wrong -- a bad flag value, a missing file, a prompt with characters the
model has never seen -- raises a `TinyLLMError`. The `tinyllm` command turns it into one line on
stderr and a non-zero exit status instead of a traceback (``--debug`` shows the traceback).
Library users catch it like any other exception; the subclasses also derive from the built-in
exception a Python programmer would expect (`ValueError`, `FileNotFoundError`, ...).
"""

from __future__ import annotations

import sys


class TinyLLMError(Exception):
    """Base class of every user-facing error. `exit_code` is what the command line exits with."""

    exit_code = 1


class UsageError(TinyLLMError, ValueError):
    """The request itself is invalid (a value out of range, an impossible config): exit status 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A model or training configuration that cannot work (e.g. n_embd not divisible by n_head)."""


class DataError(TinyLLMError):
    """A data file that is missing, empty, unreadable, too short, or fails its checksum."""


class CheckpointError(TinyLLMError):
    """A run directory or checkpoint file that is missing, truncated, tampered with or not ours."""


class UnknownCharacterError(UsageError):
    """Text that contains characters outside the tokenizer's vocabulary."""


def warn_compile_failed(error: Exception, going_on: str) -> None:
    """One line on stderr when torch.compile fails and tinyllm goes on without it (`going_on`:
    e.g. "training")."""
    text = str(error).strip()
    reason = text.splitlines()[0][:200] if text else type(error).__name__
    print(f"tinyllm: warning: torch.compile failed ({reason}); {going_on} without it", file=sys.stderr)
