"""The training loop: a module with `.loss(batch)`, a way to get batches, an optimizer. Nothing else.

Nothing here is about GPT or Shakespeare (minGPT's lesson): the same loop trains any task, and a
regression model in the tests. Read it in the order it runs:

1. `make_optimizers` (`optim.py`): AdamW, or Muon for the hidden matrices and AdamW for the rest.
2. `Trainer.lr_at` (`schedule.py`): linear warm-up, then a cosine (or warm-up, stable, decay) down
   to a floor, fitted to the budget.
3. `Trainer.step`: one optimizer step over `grad_accum` micro-batches, with gradient clipping.
4. `Trainer.evaluate`: the mean loss of each split on fixed batches (`mean_loss`), plus the task's
   own metrics.
5. `Trainer.run`: step until the budget is spent or Ctrl-C; evaluate every `eval_interval` steps;
   say when a checkpoint is due.
6. `Trainer.state_dict`: what resuming needs (the run directory decides how it is stored).

What happens around the loop -- writing metrics, saving checkpoints, drawing plots, averaging the
weights (`averaging.py`) -- is not the loop's business: it triggers named events (minGPT's
`add_callback` / `trigger_callbacks`) and whoever listens does the rest. A listener with state of
its own to resume registers it with `add_state`. The device, precision, processes and compiler come from a
`Runtime` (`runtime.py`).
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from .config import TrainConfig
from .errors import TinyLLMError
from .optim import make_optimizer, make_optimizers
from .runtime import Batch, Runtime
from .schedule import budget_progress, learning_rate

__all__ = ["Trainer", "make_optimizer", "mean_loss"]

GetBatch = Callable[[str, torch.Generator], Batch]  # (split, generator) -> a batch on the CPU
EVENTS = ("update", "step", "eval", "checkpoint")  # what a callback can listen to


@torch.no_grad()
def mean_loss(
    model: nn.Module,
    get_batch: GetBatch,
    split: str,
    batches: int,
    *,
    seed: int,
    device: torch.device,
    autocast: contextlib.AbstractContextManager | None = None,
) -> float:
    """The mean of `model.loss` over `batches` batches of `split`, drawn from `seed`: the same batches
    every time, so successive evaluations differ only by what the model learned. Used by the
    trainer's evaluations and by `tinyllm eval`."""
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(batches):
        batch = tuple(t.to(device, non_blocking=True) for t in get_batch(split, generator))
        with autocast or contextlib.nullcontext():
            total += model.loss(batch).item()
    return total / batches


class NonFiniteLossError(TinyLLMError):
    """The loss became NaN or infinite: the run stops, keeping its last good checkpoint."""


class Trainer:
    """Trains `model` (any module with `.loss(batch)`) on batches from `get_batch(split, generator)`.

    Events (`add_callback(event, fn)`; every callback gets the trainer first):
      "update"     fn(trainer, final)    right after every optimizer step, before any evaluation;
                                         `final` is True after the run's last step (not on Ctrl-C)
      "step"       fn(trainer, record)   after every optimizer step, with that step's metrics
      "eval"       fn(trainer, record)   after each evaluation (the record then holds test_loss, ...)
      "checkpoint" fn(trainer, is_best)  when a checkpoint is due: after each evaluation, every
                                         `checkpoint_interval` steps or `checkpoint_seconds`, at the
                                         end and on Ctrl-C; `state_dict()` gives what resuming needs
    `task_metrics(model, device)` gives extra numbers to log at each evaluation (e.g. accuracy).
    """

    def __init__(
        self,
        model: nn.Module,
        get_batch: GetBatch,
        config: TrainConfig,
        *,
        runtime: Runtime | None = None,
        task_metrics: Callable[[nn.Module, torch.device], dict[str, float]] | None = None,
    ) -> None:
        self.config = config
        self.runtime = runtime or Runtime(config)
        self.model = self.runtime.place(model)
        self.optimizers = make_optimizers(self.model, config, self.runtime.device)  # [AdamW] or [AdamW, Muon]
        self.runtime.speed_up(self.model, self.optimizers)  # the same maths, faster on some machines (speed/)
        self.loss_module = self.runtime.loss_module(self.model)
        self.get_batch = get_batch
        self.task_metrics = task_metrics
        self.params = list(self.model.parameters())  # listed once, not walked through the modules each step
        # each rank of a distributed run draws its own batches
        self.batch_generator = torch.Generator().manual_seed(config.seed + self.runtime.dist.rank)
        self.callbacks: dict[str, list[Callable[..., None]]] = defaultdict(list)
        self.listener_states: dict[str, Any] = {}  # name -> a listener with state_dict() / load_state_dict()
        self.iter = 0  # optimizer steps taken
        self.elapsed = 0.0  # seconds of training so far (survives a resume)
        self.best_test_loss = math.inf
        self.interrupted = False

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    # ---- events ----

    def add_callback(self, event: str, callback: Callable[..., None]) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; the events are {', '.join(EVENTS)}")
        self.callbacks[event].append(callback)

    def trigger_callbacks(self, event: str, *args: Any) -> None:
        for callback in self.callbacks[event]:
            callback(self, *args)

    def add_state(self, name: str, listener: Any) -> None:
        """Keep `listener.state_dict()` in the resume state under `name`, and give it back on resume."""
        self.listener_states[name] = listener

    # ---- the learning-rate schedule (schedule.py) ----

    def progress(self, it: int | None = None, elapsed: float | None = None) -> float:
        """How far through its budget the run is (now, unless told), 0..1."""
        return budget_progress(
            self.config, self.iter if it is None else it, self.elapsed if elapsed is None else elapsed
        )

    def lr_at(self, it: int, elapsed: float) -> float:
        return learning_rate(self.config, it, elapsed)

    # ---- one step ----

    def step(self) -> dict[str, Any]:
        """One optimizer step (over `grad_accum` micro-batches); returns its metrics record."""
        cfg, rt = self.config, self.runtime
        t0 = time.perf_counter()
        lr = self.lr_at(self.iter, self.elapsed)
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
        total_loss, tokens = 0.0, 0
        for micro in range(cfg.grad_accum):
            batch = tuple(t.to(rt.device, non_blocking=True) for t in self.get_batch("train", self.batch_generator))
            last = micro == cfg.grad_accum - 1  # DDP all-reduces gradients on the last micro-batch only
            sync = rt.no_sync(self.loss_module) if rt.dist.enabled and not last else contextlib.nullcontext()
            with sync, rt.autocast:
                loss = self.loss_module(batch) / cfg.grad_accum
            rt.scaler.scale(loss).backward()
            total_loss += loss.item()
            tokens += batch[0].numel()
        if self.runtime.any_rank(not math.isfinite(total_loss)):  # every rank stops if any loss is not finite
            total_loss = math.nan
        if not math.isfinite(total_loss):
            self.model.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                f"the loss became {total_loss} at iteration {self.iter + 1}; stopping "
                "(the last checkpoint is kept; try a lower --lr)"
            )
        if cfg.grad_clip > 0:
            for optimizer in self.optimizers:
                rt.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        for optimizer in self.optimizers:
            rt.scaler.step(optimizer)
        rt.scaler.update()
        self.model.zero_grad(set_to_none=True)  # frees the gradients instead of zeroing them
        self.iter += 1
        dt = time.perf_counter() - t0
        return {"iter": self.iter, "train_loss": total_loss, "lr": lr, "tokens_per_s": tokens * rt.dist.world_size / dt}

    # ---- evaluation ----

    def evaluate(self) -> dict[str, float]:
        """Mean loss on `eval_iters` fixed batches of each split, plus the task's own metrics."""
        self.model.eval()
        n = self.config.eval_iters
        where = dict(seed=self.config.seed + 1, device=self.device, autocast=self.runtime.autocast)
        result = {
            "eval_train_loss": mean_loss(self.model, self.get_batch, "train", n, **where),
            "test_loss": mean_loss(self.model, self.get_batch, "test", n, **where),
        }
        if self.task_metrics is not None:
            result.update(self.task_metrics(self.model, self.device))
        self.model.train()
        return result

    # ---- the loop ----

    def done(self) -> bool:
        cfg = self.config
        return (
            self.interrupted
            or (cfg.max_iters is not None and self.iter >= cfg.max_iters)
            or (cfg.max_time is not None and self.elapsed >= cfg.max_time)
        )

    def agree_to_stop(self) -> bool:
        """`done()`, agreed by every rank: clocks and Ctrl-C differ between processes, steps must not."""
        stop = self.runtime.any_rank(self.done())
        if stop and not self.done():
            self.interrupted = True  # another rank stopped (time up or Ctrl-C): stop with it
        return stop

    def run(self, progress_bar: bool = True) -> None:
        """Train until max_iters, max_time or Ctrl-C; evaluate and checkpoint along the way."""
        self.model.train()
        bar = ProgressBar(self, enabled=progress_bar and self.runtime.dist.is_main)
        start = time.perf_counter() - self.elapsed
        last_checkpoint = self.elapsed
        stop = self.agree_to_stop()
        with catch_ctrl_c(self), bar:
            while not stop:
                record = self.step()
                self.elapsed = time.perf_counter() - start
                record["elapsed_s"] = round(self.elapsed, 3)
                stop = self.agree_to_stop()
                self.trigger_callbacks("update", stop and not self.interrupted)
                evaluating = self.iter % self.config.eval_interval == 0 or (stop and not self.interrupted)
                is_best = False
                if evaluating:
                    record.update(self.evaluate())
                    self.elapsed = time.perf_counter() - start
                    is_best = record["test_loss"] < self.best_test_loss
                    self.best_test_loss = min(self.best_test_loss, record["test_loss"])
                self.trigger_callbacks("step", record)
                bar.update(record)
                if evaluating:
                    self.trigger_callbacks("eval", record)
                if self.checkpoint_due(evaluating, self.elapsed - last_checkpoint):
                    self.trigger_callbacks("checkpoint", is_best)
                    last_checkpoint = time.perf_counter() - start

    def checkpoint_due(self, evaluated: bool, seconds_since_last: float) -> bool:
        """After each evaluation, every `checkpoint_interval` steps or `checkpoint_seconds`, at the end."""
        cfg = self.config
        if evaluated or self.done():
            return True
        if cfg.checkpoint_interval is not None and self.iter % cfg.checkpoint_interval == 0:
            return True
        return cfg.checkpoint_seconds is not None and seconds_since_last >= cfg.checkpoint_seconds

    # ---- resuming ----

    def state_dict(self) -> dict[str, Any]:
        """Everything resuming needs besides the weights: optimizer, random generators, counters."""
        return {
            "optimizer": self.optimizers[0].state_dict(),
            "muon": self.optimizers[1].state_dict() if len(self.optimizers) > 1 else None,
            "batch_rng": self.batch_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "iter": self.iter,
            "elapsed_s": self.elapsed,
            "best_test_loss": self.best_test_loss if math.isfinite(self.best_test_loss) else None,
            **{name: listener.state_dict() for name, listener in self.listener_states.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state.get("muon") is None) != (len(self.optimizers) == 1):
            raise TinyLLMError("the checkpoint was saved with another --optimizer: resume with the run's own")
        self.optimizers[0].load_state_dict(state["optimizer"])
        if state.get("muon") is not None:
            self.optimizers[1].load_state_dict(state["muon"])
        self.batch_generator.set_state(state["batch_rng"])
        torch.set_rng_state(state["torch_rng"])
        cuda = state.get("cuda_rng") or []
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        self.iter = int(state["iter"])
        self.elapsed = float(state["elapsed_s"])
        best = state.get("best_test_loss")
        self.best_test_loss = math.inf if best is None else float(best)
        for name, listener in self.listener_states.items():
            listener.load_state_dict(state.get(name))


class ProgressBar:
    """tqdm's bar over the budget (0-100%), with the latest losses, learning rate and speed."""

    REDRAW_S = 0.1  # tqdm's own default interval between redraws

    def __init__(self, trainer: Trainer, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.trainer = trainer
        self.bar = tqdm(total=100, disable=not enabled, bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}")
        self.test = ""  # the latest test loss
        self.drawn_at = -math.inf  # when the bar was last drawn (time.monotonic())

    def update(self, record: dict[str, Any]) -> None:
        self.bar.n = round(100 * self.trainer.progress(), 1)
        if "test_loss" in record:
            self.test = f" test {record['test_loss']:.3f}"
        self.bar.set_postfix_str(
            f"iter {record['iter']} loss {record['train_loss']:.3f}{self.test} lr {record['lr']:.2e} "
            f"{record['tokens_per_s']:,.0f} tok/s",
            refresh=False,
        )
        # drawn at most every REDRAW_S (a step can take a millisecond; a log file gets a line a redraw),
        # and always with a new test loss; closing the bar draws the last state
        now = time.monotonic()
        if "test_loss" in record or now - self.drawn_at >= self.REDRAW_S:
            self.bar.refresh()
            self.drawn_at = now

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()


class catch_ctrl_c:
    """First Ctrl-C: finish this step, checkpoint, stop (`trainer.interrupted`). A second one interrupts
    at once. Only in the main thread, where Python delivers signals."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.previous = None

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            if self.trainer.interrupted:
                raise KeyboardInterrupt
            self.trainer.interrupted = True

        self.previous = signal.signal(signal.SIGINT, handler)

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
