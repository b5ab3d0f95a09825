"""Turning logits into text: the logits processors and the decode loop.

This module knows only token ids and a model with `forward(idx, kv_cache) -> logits`; the
tokenizer and the task live elsewhere. Each step, the last position's logits go through these
processors, in this order (the order Hugging Face's `generate` uses):

1. **repetition penalty** -- every token already in the sequence (prompt included) gets its logit
   divided by the penalty if positive, multiplied by it if negative (CTRL, Keskar et al. 2019);
   a penalty > 1 discourages repeats.
2. **temperature** -- logits / T. T < 1 sharpens the distribution, T > 1 flattens it, and T = 0
   means greedy decoding: take the most likely token (no division by zero).
3. **top-k** -- keep exactly the k most likely tokens (ties broken towards the lower token id).
4. **top-p** (nucleus) -- keep the smallest set of most likely tokens whose probability mass
   reaches p; the most likely token is always kept.
5. **min-p** -- keep tokens whose probability is at least p times the top token's probability.

Each filter sees the distribution the previous ones left (renormalised), then one token is drawn
with a per-call `torch.Generator`, so a seed reproduces a sample without touching the global RNG.

A model this small is bound by per-step overhead (Python, dispatch, ~60 small kernels per token),
not by arithmetic. `compile=True` runs the one-token decode step through `torch.compile`, which
fuses the small kernels and drops the Python; see `CompiledDecodeStep`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from .errors import UsageError, warn_compile_failed
from .kv_cache import KVCache, window_start
from .settings import (
    boolean,
    check_fields,
    non_negative_int,
    non_negative_number,
    optional,
    positive_int,
    positive_number,
    probability,
    setting,
    unit_interval,
)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token. The defaults sample from the model's plain distribution.

    Each field is a `setting`: its check runs here, and its help text is `tinyllm sample`'s flag."""

    temperature: float = setting(1.0, "0 is greedy; <1 safer, >1 wilder", non_negative_number)
    top_k: int | None = setting(None, "sample from the k most likely tokens", optional(positive_int))
    top_p: float | None = setting(
        None, "sample from the smallest set of tokens with this much probability", optional(probability)
    )
    min_p: float | None = setting(
        None, "drop tokens less likely than this fraction of the top token's probability", optional(unit_interval)
    )
    repetition_penalty: float = setting(1.0, ">1 discourages repeating tokens", positive_number)

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SamplingParams:
        """The settings named in `options` (keyword arguments: temperature=0.8, ...), the rest default;
        a name that is not a setting is a clear error."""
        names = cls.names()
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise UsageError(f"unknown sampler setting {unknown[0]!r}; the settings are {', '.join(names)}")
        return cls(**options)


def apply_repetition_penalty(logits: torch.Tensor, seq: torch.Tensor, penalty: float) -> torch.Tensor:
    """Push down the logits (B, V) of every token that occurs in `seq` (B, T)."""
    seen = torch.gather(logits, 1, seq)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(1, seq, seen)


def _sorted_desc(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # a stable sort keeps equal logits in token-id order: ties always resolve the same way
    return torch.sort(logits, dim=-1, descending=True, stable=True)


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the `k` largest logits per row; the rest become -inf."""
    if k >= logits.shape[-1]:
        return logits
    _, order = _sorted_desc(logits)
    drop = torch.zeros_like(logits, dtype=torch.bool).scatter(1, order[:, k:], True)
    return logits.masked_fill(drop, float("-inf"))


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest high-probability set whose total probability reaches `p`."""
    sorted_logits, order = _sorted_desc(logits)
    probs = F.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs  # probability of all more likely tokens
    drop_sorted = mass_before >= p  # already reached p without this token; never the first one
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def apply_min_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Drop tokens less likely than `p` times the most likely token."""
    probs = F.softmax(logits, dim=-1)
    threshold = p * probs.max(dim=-1, keepdim=True).values
    return logits.masked_fill(probs < threshold, float("-inf"))


@dataclass(frozen=True)
class Stage:
    """One logits processor: its name, whether the settings turn it on, and what it does to logits (B, V)."""

    name: str
    active: Callable[[SamplingParams], bool]
    apply: Callable[[torch.Tensor, torch.Tensor, SamplingParams], torch.Tensor]  # (logits, seq, params)


# The processors, in the order they apply: the sampler runs them, `inspection.sampler_stages` shows them.
STAGES = (
    Stage(
        "repetition_penalty",
        lambda p: p.repetition_penalty != 1.0,
        lambda z, seq, p: apply_repetition_penalty(z, seq, p.repetition_penalty),
    ),
    Stage("temperature", lambda p: p.temperature != 1.0, lambda z, seq, p: z / p.temperature),
    Stage("top_k", lambda p: p.top_k is not None, lambda z, seq, p: apply_top_k(z, p.top_k)),
    Stage("top_p", lambda p: p.top_p is not None and p.top_p < 1.0, lambda z, seq, p: apply_top_p(z, p.top_p)),
    Stage("min_p", lambda p: bool(p.min_p), lambda z, seq, p: apply_min_p(z, p.min_p)),
)


def each_stage(logits: torch.Tensor, seq: torch.Tensor, params: SamplingParams) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, logits after it) for each processor of `STAGES` in order; one that is off leaves the
    logits as they were. Greedy decoding (temperature 0) stops after the repetition penalty: the
    filters after it cannot change which token is the most likely."""
    for stage in STAGES:
        if params.temperature == 0 and stage.name != "repetition_penalty":
            return
        if stage.active(params):
            logits = stage.apply(logits, seq, params)
        yield stage.name, logits


def process_logits(logits: torch.Tensor, seq: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Apply the processors in the documented order to next-token logits (B, V)."""
    processed = logits
    for _name, processed in each_stage(logits, seq, params):  # noqa: B007  (the last one is the result)
        pass
    return processed


def sample_next(
    logits: torch.Tensor,
    seq: torch.Tensor | None,
    params: SamplingParams,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> torch.Tensor:
    """Pick one token per row from next-token logits (B, V); `seq` (B, T) is the text so far (only the
    repetition penalty reads it); `generator`: one, or one per row (see `draw`)."""
    logits = process_logits(logits.float(), seq, params)
    if params.temperature == 0:
        return torch.argmax(logits, dim=-1)  # the first maximum: deterministic
    return draw(F.softmax(logits, dim=-1), generator)


def draw(probs: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator] | None = None) -> torch.Tensor:
    """One token per row of `probs` (B, V), by inverse-CDF sampling.

    Lay the probabilities end to end on [0, total), throw one uniform number per row, and take the
    token whose stretch it lands in. Exactly the distribution `torch.multinomial` samples, but it
    needs one random number per row instead of one per token: cheaper at every decode step.
    A token of probability 0 has a stretch of length 0, so it can never be drawn. `generator` may
    be a list, one per row (generations decoded together, `batching.py`): each row's number then
    comes from its own generator, as it would if the row were sampled alone.
    """
    cdf = probs.cumsum(dim=-1)
    total = cdf[:, -1:]
    like = dict(device=probs.device, dtype=probs.dtype)
    if isinstance(generator, (list, tuple)):
        u = torch.cat([torch.rand((1, 1), generator=g, **like) for g in generator]) * total
    else:
        u = torch.rand(total.shape, generator=generator, **like) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # stay below the top end
    return torch.searchsorted(cdf, u, right=True).squeeze(1)  # first token whose cdf exceeds u


class StopChecker:
    """Watches each row's newly generated tokens for any of the stop sequences."""

    def __init__(self, stop: Sequence[Sequence[int]], batch_size: int) -> None:
        self.stop = [list(s) for s in stop if len(s) > 0]
        self.longest = max((len(s) for s in self.stop), default=0)
        self.recent: list[list[int]] = [[] for _ in range(batch_size)]
        self.done = [False] * batch_size

    def update(self, tokens: torch.Tensor) -> bool:
        """Record one step's tokens (B,); True once every row has produced a stop sequence."""
        for row, token in enumerate(tokens.tolist()):
            recent = self.recent[row]
            recent.append(token)
            del recent[: -self.longest]
            if not self.done[row]:
                self.done[row] = any(recent[-len(s) :] == s for s in self.stop)
        return all(self.done)


def next_token_logits(model: torch.nn.Module, idx: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
    """One forward pass over `idx` (B, T); the logits (B, vocab) of its last position."""
    return model(idx, cache)[:, -1]


class CompiledDecodeStep:
    """`next_token_logits` for one new token, through `torch.compile`; eager if compiling fails.

    Shapes are left to PyTorch's automatic dynamic shapes: the first step compiles for its exact
    shapes; at the next step the cache length has changed, so dynamo compiles once more with the
    length as a symbol, and that graph serves every later length (a new batch size likewise, once).
    That costs one more compile than `dynamic=True` but leaves every other size fixed, and the
    steps ran about 8% faster at batch 1 here. The model and the cache are arguments, so one
    compiled function serves every model: dynamo's guards check that shapes and structure match
    and compile again when they do not, keeping up to 8 graphs per process
    (`torch._dynamo.config.recompile_limit`), past which it warns and runs the step eagerly.
    Parameters are inputs to the graph, so weights changed after compiling (more training) are
    used. The first call compiles (seconds), which only pays for long generations: that is why it
    is opt-in. Inside the graph, attention for the one new token is written as plain maths (see
    `CausalSelfAttention`), which the compiler fuses.

    Only the one-token step is compiled. The prompt's prefill and the re-prefills of the window
    policy run eagerly: they are a few calls with ever-different lengths.
    """

    def __init__(self) -> None:
        self.compiled: Callable[..., torch.Tensor] | None = None
        self.failed = False

    def __call__(self, model: torch.nn.Module, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        if self.failed:
            return next_token_logits(model, idx, cache)
        if self.compiled is None:
            self.compiled = torch.compile(next_token_logits, fullgraph=True)
        try:
            return self.compiled(model, idx, cache)
        except Exception as e:  # a missing C++ compiler, an unsupported op, ...
            # A mistake in the inputs fails eagerly too, and raises from here; only a failure of
            # the compiler itself turns compiling off (for this process) with a warning.
            logits = next_token_logits(model, idx, cache)
            warn_compile_failed(e, "decoding")
            self.failed = True
            return logits


compiled_decode_step = CompiledDecodeStep()  # one per process: compiled graphs are reused across calls


def default_shift(block_size: int) -> int:
    """How far the context window jumps when it is full: a quarter of the block (at least 1)."""
    return max(1, block_size // 4)


def stream(
    model: torch.nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    params: SamplingParams = SamplingParams(),
    *,
    stop: Sequence[Sequence[int]] | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    shift: int | None = None,
    compile: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield each step's new tokens (B,) as they are sampled.

    With `use_cache`, the prompt is run once to fill a `KVCache`, then each step feeds only the
    newest token. Without it, each step re-runs the model over the whole context window -- the
    reference the cache is tested against. Both follow the same window policy past block_size
    (`kv_cache.window_start`), so they produce the same tokens. `compile` runs the cached one-token
    step through `torch.compile` (`CompiledDecodeStep`): the same tokens, faster once compiled.
    The arguments are checked at the call, before the first token is asked for.
    """
    non_negative_int("max_new_tokens", max_new_tokens)
    if idx.ndim != 2 or idx.shape[1] == 0:
        raise UsageError("the prompt must hold at least one token")
    block_size = model.config.block_size
    shift = default_shift(block_size) if shift is None else shift
    positive_int("shift", shift)
    boolean("compile", compile)
    if compile and not use_cache:
        raise UsageError("compile speeds up the cached decode step: it cannot be combined with use_cache=False")
    decode_step = compiled_decode_step if compile else next_token_logits
    return _decode(model, idx, max_new_tokens, params, stop, use_cache, generator, shift, decode_step)


@torch.inference_mode()
def _decode(
    model, idx, max_new_tokens, params, stop, use_cache, generator, shift, decode_step
) -> Iterator[torch.Tensor]:
    """The decode loop behind `stream`, with its arguments already checked."""
    if max_new_tokens == 0:
        return
    block_size = model.config.block_size
    B, prompt_len = idx.shape
    seq = torch.empty(B, prompt_len + max_new_tokens, dtype=torch.long, device=idx.device)
    seq[:, :prompt_len] = idx
    n = prompt_len  # tokens so far
    start = max(0, n - block_size)  # first token of the context window
    stopper = StopChecker(stop, B) if stop else None
    cache = KVCache.for_model(model, B) if use_cache else None

    was_training = model.training
    model.eval()
    try:
        logits = next_token_logits(model, seq[:, start:n], cache)  # prefill: the whole prompt in one pass
        for step in range(max_new_tokens):
            token = sample_next(logits, seq[:, :n], params, generator)
            seq[:, n] = token
            n += 1
            yield token
            if (stopper is not None and stopper.update(token)) or step == max_new_tokens - 1:
                return
            new_start = window_start(n, start, block_size, shift)
            if cache is None:
                logits = next_token_logits(model, seq[:, new_start:n], None)
            elif new_start != start:  # the window jumped: re-prefill its tokens at positions 0..
                cache.reset()
                logits = next_token_logits(model, seq[:, new_start:n], cache)
            else:  # the usual step: just the newest token, at the next position
                logits = decode_step(model, token.unsqueeze(1), cache)
            start = new_start
    finally:
        model.train(was_training)


def generate(
    model: torch.nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    params: SamplingParams = SamplingParams(),
    **options,
) -> torch.Tensor:
    """Run `stream` to the end; returns the prompt followed by the new tokens, (B, T + new)."""
    new = list(stream(model, idx, max_new_tokens, params, **options))
    if not new:
        return idx.clone()
    return torch.cat([idx, torch.stack(new, dim=1)], dim=1)
