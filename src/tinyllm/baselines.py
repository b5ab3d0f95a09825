"""Counting baselines: how far does a model get that only counts? The frame for a test loss.

makemore starts from a bigram table of counts for the same reason: a neural model's worth is what it
adds over counting. Each baseline here is counted on a run's own training tokens (as one sequence)
and scored on its own test tokens (as one sequence: every test token given the tokens before it in
the test split), in nats per token, as the model's test loss is:

- `uniform`: every token equally likely, ln(V);
- `unigram`: token frequencies, add-one smoothed, (count(t) + 1) / (N + V);
- `bigram`: pairs, add-one smoothed, (count(a, b) + 1) / (count(a, .) + V);
- `kneser_ney_3` ... `kneser_ney_6`: interpolated Kneser-Ney n-grams with one absolute discount,
  0.75, at every order (Kneser & Ney 1995; Chen & Goodman 1998). The highest order counts what
  follows a history; every lower order counts in how many *distinct contexts* a sequence appears
  (its continuation count), and the unigram is interpolated with the uniform distribution, so no
  token ever gets probability 0. A history never seen backs off entirely to the order below.

Everything is counted with numpy: n-grams become rows of a 2-D array, turned into byte strings
(big-endian, so that byte order is number order) that `np.unique` counts and `np.searchsorted`
looks up. Tiny Shakespeare's ~1M tokens take a few seconds.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import read_json, write_json
from .errors import CheckpointError

DISCOUNT = 0.75
KN_ORDERS = (3, 4, 5, 6)
NAMES = ("uniform", "unigram", "bigram", *(f"kneser_ney_{n}" for n in KN_ORDERS))


def ngrams(tokens: np.ndarray, n: int) -> np.ndarray:
    """Every n-gram of `tokens` as one byte string each (N - n + 1,), in a sortable form."""
    if len(tokens) < n:
        return np.empty(0, dtype=f"V{4 * n}")
    rows = np.lib.stride_tricks.sliding_window_view(tokens, n).astype(">i4")
    return np.ascontiguousarray(rows).view(f"V{4 * n}").ravel()


class Table:
    """Counts of byte-string keys: `lookup(queries)` gives each query's count (0 if never seen)."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray | None = None) -> None:
        if counts is None:
            self.keys, self.counts = np.unique(keys, return_counts=True)
        else:  # keys given with their counts: sum the counts of equal keys
            self.keys, inverse = np.unique(keys, return_inverse=True)
            self.counts = np.bincount(inverse.ravel(), weights=counts, minlength=len(self.keys))

    def lookup(self, queries: np.ndarray) -> np.ndarray:
        if len(self.keys) == 0:
            return np.zeros(len(queries))
        at = np.minimum(np.searchsorted(self.keys, queries), len(self.keys) - 1)
        return np.where(self.keys[at] == queries, self.counts[at], 0).astype(np.float64)


def split_key(keys: np.ndarray, n: int, first: int, last: int) -> np.ndarray:
    """Tokens first..last-1 of n-gram keys, as keys of their own."""
    rows = np.ascontiguousarray(keys).view(">i4").reshape(-1, n)[:, first:last]
    return np.ascontiguousarray(rows).view(f"V{4 * (last - first)}").ravel()


def kneser_ney(train: np.ndarray, test: np.ndarray, vocab: int, order: int) -> np.ndarray:
    """The probability of every test token under interpolated Kneser-Ney of `order`, each given the
    test tokens before it (fewer at the start of the split: the orders that fit)."""
    # counts[k]: for the highest order, how often each k-gram occurs; below it, continuation counts:
    # in how many distinct contexts (one token to the left) each k-gram occurs
    counts = {order: Table(ngrams(train, order))}
    for k in range(order - 1, 0, -1):
        distinct = np.unique(ngrams(train, k + 1))  # every (k+1)-gram once: a k-gram and its left context
        counts[k] = Table(split_key(distinct, k + 1, 1, k + 1))
    # the unigram, interpolated with the uniform distribution
    unigram = counts[1]
    total = unigram.counts.sum()
    p = (np.maximum(unigram.lookup(ngrams(test, 1)) - DISCOUNT, 0) + DISCOUNT * len(unigram.keys) / vocab) / total
    for k in range(2, order + 1):
        table = counts[k]
        history_keys = split_key(table.keys, k, 0, k - 1)
        history_total = Table(history_keys, table.counts)  # c(h .)
        history_types = Table(history_keys, np.ones(len(table.keys)))  # N1+(h .)
        grams = ngrams(test, k)  # the k-gram ending at test position i, for i >= k - 1
        histories = split_key(grams, k, 0, k - 1)
        c_hw, c_h, n_h = table.lookup(grams), history_total.lookup(histories), history_types.lookup(histories)
        lower = p[k - 1 :]
        with np.errstate(divide="ignore", invalid="ignore"):
            here = np.maximum(c_hw - DISCOUNT, 0) / c_h + DISCOUNT * n_h / c_h * lower
        p = np.concatenate([p[: k - 1], np.where(c_h > 0, here, lower)])
    return p


def add_one(train: np.ndarray, test: np.ndarray, vocab: int) -> tuple[float, float]:
    """Test losses (nats per token) of the add-one unigram and bigram."""
    unigram = np.bincount(train, minlength=vocab).astype(np.float64)
    p1 = (unigram[test] + 1) / (len(train) + vocab)
    pairs = Table(ngrams(train, 2))
    firsts = np.bincount(train[:-1], minlength=vocab).astype(np.float64)  # count(a, .)
    p2 = (pairs.lookup(ngrams(test, 2)) + 1) / (firsts[test[:-1]] + vocab)
    return float(-np.log(p1).mean()), float(-np.log(np.concatenate([p1[:1], p2])).mean())


def counting_baselines(train: np.ndarray, test: np.ndarray, vocab: int) -> dict[str, float]:
    """Every baseline's test loss in nats per token, counted on `train` and scored on `test` (token ids)."""
    train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
    unigram, bigram = add_one(train, test, vocab)
    result = {"uniform": math.log(vocab), "unigram": unigram, "bigram": bigram}
    for order in KN_ORDERS:
        result[f"kneser_ney_{order}"] = float(-np.log(kneser_ney(train, test, vocab, order)).mean())
    return result


# ---- a run's baselines: computed when first asked for, kept in the run folder with what they came from ----

CACHE = "baselines.json"


def fingerprint(train: np.ndarray, test: np.ndarray, vocab: int) -> str:
    """What the baselines were computed from: the tokens of both splits and the vocabulary's size."""
    digest = hashlib.sha256(f"{vocab}:{len(train)}:{len(test)}:{DISCOUNT}:".encode())
    digest.update(np.asarray(train, dtype="<i4").tobytes())
    digest.update(np.asarray(test, dtype="<i4").tobytes())
    return digest.hexdigest()


def counted_baselines(run_dir: Path, train: np.ndarray, test: np.ndarray, vocab: int) -> dict[str, float]:
    """The baselines of a run's splits, from `run_dir/baselines.json` when it was computed from the
    same tokens (a changed corpus, split or tokenizer is noticed and counted again), else counted now
    and kept there."""
    path = Path(run_dir) / CACHE
    stamp = fingerprint(train, test, vocab)
    try:
        kept = read_json(path)
        if kept.get("fingerprint") == stamp and set(kept.get("baselines", {})) == set(NAMES):
            return {name: float(kept["baselines"][name]) for name in NAMES}
    except (CheckpointError, AttributeError):  # no file yet, or not ours: count again
        pass
    result = counting_baselines(train, test, vocab)
    kept = {"fingerprint": stamp, "vocab": vocab, "train_tokens": len(train), "test_tokens": len(test)}
    try:
        write_json(path, {**kept, "discount": DISCOUNT, "baselines": result})
    except OSError:  # a read-only run folder: the figures stand, they are just not kept
        pass
    return result


def kept_baselines(run_dir: Path) -> dict[str, float] | None:
    """The baselines kept in `run_dir`, unchecked (None if there are none)."""
    try:
        kept = read_json(Path(run_dir) / CACHE)["baselines"]
        return {name: float(kept[name]) for name in NAMES}
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None


def passed_at(records: list[dict[str, Any]], baselines: dict[str, float]) -> dict[str, dict[str, float] | None]:
    """For each baseline, the first evaluation whose test loss was below it (step and seconds of
    training), or None where the model never got there."""
    evaluations = [r for r in records if "test_loss" in r]
    result: dict[str, dict[str, float] | None] = {}
    for name, loss in baselines.items():
        first = next((r for r in evaluations if r["test_loss"] < loss), None)
        result[name] = None if first is None else {"step": first["iter"], "seconds": first.get("elapsed_s")}
    return result
