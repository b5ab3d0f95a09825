"""Many generations decoded together: one forward pass per step for all of them (continuous batching).

A model this small is nowhere near using the CPU on one generation: each step reads every weight
to make *one* token, and most of the step's time goes to fixed costs (Python, ~60 small kernels)
that do not grow with the batch. Feed sixteen generations' newest tokens as one batch of sixteen
rows and the weights are read once for all of them; the step costs little more than one. Only
the attention over each row's own cache is not shared.

`DecodeLoop(model)` keeps a queue of waiting generations and a batch of active ones (at most
`max_batch`, in the rows of a `BatchKVCache`). Each `step()`:

1. frees the rows of generations that ended or were cancelled (a closed connection);
2. admits waiting generations into free rows: each prompt, but its last token, is prefilled on
   its own (a one-row `KVCache`, copied into the row);
3. runs one forward pass over every active row: its newest token, at its own position, seeing
   only its own keys;
4. picks each row's next token with the row's own sampler settings, generator and stop
   sequences (`sampling.sample_next`); a row whose context window must jump past block_size is
   prefilled again on its own (`kv_cache.window_start`, the same policy as `sampling.stream`).

Each row's logits are those of the same generation decoded alone, to float rounding (the tests
hold them within 1e-5), so a greedy or seeded generation gives the same text alone or in a crowd.
This module knows token ids only; `inference.Run` turns text into ids and back.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .errors import TinyLLMError
from .kv_cache import BatchKVCache, KVCache, window_start
from .sampling import SamplingParams, default_shift, sample_next

MAX_BATCH = 32  # generations decoded together (`tinyllm serve --max-batch`)
MAX_QUEUE = 256  # generations waiting for a row, past which new ones are refused (`--max-queue`)


class QueueFull(TinyLLMError):
    """Too many generations waiting: the server answers 429 with Retry-After."""


@dataclass(eq=False)
class Generation:
    """One generation: what it asked for, and (read by whoever waits for it) the tokens so far."""

    prompt: list[int]
    max_new_tokens: int
    params: SamplingParams = SamplingParams()
    generator: torch.Generator | None = None
    stop: Sequence[Sequence[int]] = ()
    notify: Callable[[], None] | None = None  # called from the loop's thread when tokens or the end arrive
    tokens: list[int] = field(default_factory=list)
    finished: bool = False
    error: str | None = None  # why it ended early, if it failed
    cancelled: bool = False
    # the decode state: the whole sequence, its length and where the context window begins
    seq: torch.Tensor | None = None
    n: int = 0
    start: int = 0

    def cancel(self) -> None:
        """Stop it: the loop frees its row at its next step."""
        self.cancelled = True

    def _end(self, error: str | None = None) -> None:
        self.finished, self.error = True, error

    def _push(self, token: int) -> None:
        """Record a new token; end the generation at max_new_tokens or a stop sequence."""
        self.seq[0, self.n] = token
        self.n += 1
        self.tokens.append(token)
        if len(self.tokens) >= self.max_new_tokens or any(s and self.tokens[-len(s) :] == list(s) for s in self.stop):
            self._end()


class DecodeLoop:
    """Decodes every generation of one model together; `submit` from any thread, `step` from one."""

    def __init__(self, model: torch.nn.Module, max_batch: int = MAX_BATCH, max_queue: int = MAX_QUEUE) -> None:
        self.model = model
        self.max_batch, self.max_queue = max_batch, max_queue
        self.cache = BatchKVCache(model, max_batch)
        self.active: list[Generation] = []  # row i of the cache holds active[i]
        self.waiting: deque[Generation] = deque()
        self.device = model.transformer.wte.weight.device
        self.block_size = model.config.block_size
        self.shift = default_shift(self.block_size)
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._serving = False  # stepped by a thread of its own (`start`)
        self._closed = False

    # ---- from any thread ----

    def submit(self, generation: Generation) -> Generation:
        """Queue a generation (it starts at the next step, in a free row); `QueueFull` when every row
        is taken and `max_queue` generations are waiting already."""
        with self._wake:
            if len(self.active) + len(self.waiting) >= self.max_batch + self.max_queue:
                raise QueueFull(
                    f"{self.max_batch} generations are decoding and {len(self.waiting)} waiting: try again shortly"
                )
            self.waiting.append(generation)
            self._wake.notify()
            if self._serving and self._thread is None:  # closed and ended while this was on its way
                self._start_thread()
        return generation

    def start(self) -> None:
        """Step in a thread of its own whenever there is work (a server's loop)."""
        with self._wake:  # one thread steps the loop, however many requests ask at once
            self._serving = True
            if self._thread is None:
                self._start_thread()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="tinyllm-decode", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Let the thread end once the generations it has are done (a run unloaded or reloaded)."""
        with self._wake:
            self._closed = True
            self._wake.notify()

    def busy(self) -> tuple[int, int]:
        """(generations decoding, generations waiting)."""
        return len(self.active), len(self.waiting)

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self.waiting and not self.active:
                    self._wake.wait()
                if self._closed and not self.waiting and not self.active:
                    self._thread = None  # (a generation submitted after this starts another)
                    return
            self.step()

    # ---- the step: from one thread at a time ----

    def run_until_done(self) -> None:
        """Step until every submitted generation has ended (Python and the command line)."""
        while self.active or self.waiting:
            self.step()

    @torch.inference_mode()
    def step(self) -> None:
        """One step: free ended rows, admit waiting generations, one forward, one token per row."""
        self._retire()
        self._admit()
        if not self.active:
            return
        newest = torch.tensor([[g.tokens[-1] if g.tokens else g.prompt[-1]] for g in self.active], device=self.device)
        try:
            self.cache.begin_step()
            logits = self.model(newest, self.cache)[:, -1]  # (rows, V)
            self.cache.end_step()
        except Exception:  # one row's input breaks the batch: step each row alone, to end only that one
            logits = [self._forward_alone(row, newest[row : row + 1]) for row in range(len(self.active))]
        tokens = self._sample(logits)
        for row, g in enumerate(self.active):
            if tokens[row] is not None:
                self._next_token(row, g, tokens[row])
        for g in self.active:
            if g.notify is not None:
                g.notify()
        self._retire()

    def _forward_alone(self, row: int, newest: torch.Tensor) -> torch.Tensor | None:
        """Row `row`'s step on its own (its cache copied out and back); None if it fails, which ends it."""
        try:
            single = self.cache.take(row)
            logits = self.model(newest, single)[:, -1]
            self.cache.put(row, single)
            return logits
        except Exception as e:
            self.active[row]._end(f"generation failed: {e}")
            return None

    def _sample(self, logits: torch.Tensor | list[torch.Tensor | None]) -> list[int | None]:
        """Each row's next token, from its logits (rows, V; or one (1, V) per row, None where the row
        failed), with its own settings and generator. Rows with the same settings are sampled as one
        batch (each still draws from its own generator); the repetition penalty reads each row's own
        text, so those rows are sampled one by one."""
        groups: dict[SamplingParams, list[int]] = {}
        for row, g in enumerate(self.active):
            if logits[row] is not None:
                together = g.params.repetition_penalty == 1.0
                groups.setdefault(g.params if together else row, []).append(row)
        tokens: list[int | None] = [None] * len(self.active)
        for rows in groups.values():
            gens = [self.active[row] for row in rows]
            if len(rows) > 1:
                try:
                    if isinstance(logits, torch.Tensor):  # every row, or some of them
                        stacked = logits if len(rows) == len(logits) else logits[rows]
                    else:
                        stacked = torch.cat([logits[row] for row in rows])
                    picked = sample_next(stacked, None, gens[0].params, [g.generator for g in gens]).tolist()
                    for row, token in zip(rows, picked, strict=True):
                        tokens[row] = token
                    continue
                except Exception:  # sample them one by one, to end only the one that fails
                    pass
            for row, g in zip(rows, gens, strict=True):
                try:
                    row_logits = logits[row : row + 1] if isinstance(logits, torch.Tensor) else logits[row]
                    tokens[row] = int(sample_next(row_logits, g.seq[:, : g.n], g.params, g.generator))
                except Exception as e:  # one failing generation never stops the others
                    g._end(f"generation failed: {e}")
        return tokens

    def _next_token(self, row: int, g: Generation, token: int) -> None:
        try:
            g._push(token)
            if not g.finished:
                new_start = window_start(g.n, g.start, self.block_size, self.shift)
                if new_start != g.start:  # the window jumps: cache its tokens again, at positions 0..
                    g.start = new_start
                    self.cache.put(row, self._prefill(g))
        except Exception as e:  # one failing generation never stops the others
            g._end(f"generation failed: {e}")

    def _prefill(self, g: Generation) -> KVCache:
        """The window's tokens but the newest, cached on their own (the step feeds the newest)."""
        single = KVCache.for_model(self.model, 1)
        if g.n - 1 > g.start:
            self.model(g.seq[:, g.start : g.n - 1], single)
        return single

    def _admit(self) -> None:
        while len(self.active) < self.max_batch:
            with self._wake:
                if not self.waiting:
                    return
                g = self.waiting.popleft()
            if g.cancelled or g.max_new_tokens == 0:
                g._end()
                if g.notify is not None:
                    g.notify()
                continue
            try:
                g.seq = torch.empty(1, len(g.prompt) + g.max_new_tokens, dtype=torch.long, device=self.device)
                g.seq[0, : len(g.prompt)] = torch.tensor(g.prompt, device=self.device)
                g.n = len(g.prompt)
                g.start = max(0, g.n - self.block_size)
                self.cache.put(len(self.active), self._prefill(g))
            except Exception as e:
                g._end(f"generation failed: {e}")
                if g.notify is not None:
                    g.notify()
                continue
            self.active.append(g)

    def _retire(self) -> None:
        """Free the rows of ended and cancelled generations (the last row moves into each)."""
        row = 0
        while row < len(self.active):
            g = self.active[row]
            if g.finished or g.cancelled:
                if not g.finished:
                    g._end()
                    if g.notify is not None:
                        g.notify()
                self.cache.remove(row)
                self.active[row] = self.active[-1]
                self.active.pop()
            else:
                row += 1
