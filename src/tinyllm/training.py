"""A generic trainer: it knows a module with `.loss(batch)`, a way to get batches, and an optimizer.

Nothing here is about GPT or Shakespeare (minGPT's lesson): the same loop trains any task.

- AdamW, with weight decay only on matrices (2-D weights: linear layers and embeddings). Biases
  and LayerNorm gains are not decayed: shrinking them towards zero only hurts.
- Learning rate: linear warm-up, then cosine decay to a floor (`min_lr`). The decay follows
  whichever budget is nearer its end: iterations (`max_iters`) or wall time (`max_time`), so a
  time-limited run still ends its schedule at the floor, right when the time is up.
- Gradient clipping, gradient accumulation, evaluation of train and test loss every
  `eval_interval` steps on a fixed set of batches (the same batches each time: a smoother curve).
- Ctrl-C finishes the current step, then stops cleanly so the caller can save a checkpoint.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn

from .cpu_matmul import onednn_available, use_onednn_linear, use_onednn_where_it_pays
from .errors import ConfigError, TinyLLMError, warn_compile_failed

Batch = tuple[torch.Tensor, ...]


@dataclass
class TrainConfig:
    """How to train. A task overrides some defaults; the command line overrides anything."""

    batch_size: int = 32
    lr: float = 1e-3  # peak learning rate, reached after warm-up
    min_lr: float | None = None  # the floor the cosine decays to (default: lr / 10)
    warmup_iters: int = 100
    max_iters: int | None = 5000  # stop after this many optimizer steps ...
    max_time: float | None = None  # ... or after this many seconds, whichever comes first
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99  # a bit below the usual 0.999: small batches give noisy gradients
    grad_clip: float = 1.0  # clip the global gradient norm (0 disables)
    grad_accum: int = 1  # micro-batches per optimizer step
    eval_interval: int = 250
    eval_iters: int = 20  # batches per split in each evaluation
    checkpoint_interval: int | None = None  # checkpoint every N steps (default: at each evaluation) ...
    checkpoint_seconds: float | None = None  # ... and/or every this many seconds
    seed: int = 1337
    device: str = "auto"
    dtype: str = "float32"  # float32, or bfloat16/float16 autocast (float16 with a gradient scaler)
    compile: bool = False  # torch.compile the model (falls back to eager with a warning if it cannot)
    cpu_matmul: str = "auto"  # float32 CPU products: "auto" (oneDNN where it pays), "onednn" or "default"

    def __post_init__(self) -> None:
        def positive_int(name: str, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")

        for name in ("batch_size", "grad_accum", "eval_interval", "eval_iters"):
            positive_int(name)
        positive_int("max_iters", allow_none=True)
        positive_int("checkpoint_interval", allow_none=True)
        if isinstance(self.warmup_iters, bool) or not isinstance(self.warmup_iters, int) or self.warmup_iters < 0:
            raise ConfigError(f"warmup_iters must be an integer >= 0, got {self.warmup_iters!r}")
        for name in ("lr", "min_lr", "max_time", "checkpoint_seconds", "weight_decay", "grad_clip", "beta1", "beta2"):
            value = getattr(self, name)
            if value is None and name in ("min_lr", "max_time", "checkpoint_seconds"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"min_lr must be in [0, lr], got {self.min_lr}")
        if self.max_time is not None and self.max_time <= 0:
            raise ConfigError(f"max_time must be > 0 seconds, got {self.max_time}")
        if self.checkpoint_seconds is not None and self.checkpoint_seconds <= 0:
            raise ConfigError(f"checkpoint_seconds must be > 0, got {self.checkpoint_seconds}")
        if self.max_iters is None and self.max_time is None:
            raise ConfigError("set max_iters or max_time (or both): training needs an end")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("weight_decay and grad_clip must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError("beta1 and beta2 must be in [0, 1)")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"compile must be true or false, got {self.compile!r}")
        if self.cpu_matmul not in ("auto", "onednn", "default"):
            raise ConfigError(f"cpu_matmul must be auto, onednn or default, got {self.cpu_matmul!r}")
        if self.cpu_matmul == "onednn" and (self.compile or self.dtype != "float32"):
            raise ConfigError("cpu_matmul onednn is for eager float32 training (not with compile or autocast)")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu, cuda or mps, got {self.device!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; an unavailable device is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TinyLLMError("--device cuda was asked for, but PyTorch sees no CUDA GPU")
    if name == "mps" and not torch.backends.mps.is_available():
        raise TinyLLMError("--device mps was asked for, but MPS is not available")
    return torch.device(name)


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a `torchrun` job (rank 0 of 1 when run on its own)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> Distributed:
    """Join the process group that `torchrun` describes in RANK/WORLD_SIZE/LOCAL_RANK, if any.

    NCCL between GPUs, gloo between CPU processes. Without torchrun this does nothing.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Distributed(rank, world_size, local_rank)


def finish_distributed() -> None:
    """Leave the process group, all ranks together, as PyTorch asks of a process before it exits
    (left to interpreter shutdown, gloo's threads can abort the process). No-op without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # A finished trainer's DistributedDataParallel wrapper holds the group; free it now, while
        # Python is fully alive, so that the group's threads are joined here and not at exit.
        gc.collect()
        dist.barrier()  # nobody tears down its connections while another rank still uses them
        dist.destroy_process_group()


class LossOf(nn.Module):
    """`forward(batch)` = `model.loss(batch)`: DistributedDataParallel and torch.compile wrap forward()."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model.loss(batch)


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with two parameter groups: matrices are decayed, vectors (biases, LayerNorm) are not."""
    params = [p for p in model.parameters() if p.requires_grad]  # tied weights appear once
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # the fused kernel updates every parameter in one go; it exists for CPU and CUDA tensors
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), fused=fused)


class NonFiniteLossError(TinyLLMError):
    """The loss became NaN or infinite: the run stops, keeping its last good checkpoint."""


class Trainer:
    """Trains `model` (any module with `.loss(batch)`) on batches from `get_batch(split, generator)`.

    Hooks, all optional:
      on_step(record)         -- after every optimizer step, with that step's metrics
      on_eval(record)         -- after each evaluation (the record then holds test_loss, ...)
      on_checkpoint(trainer, is_best) -- when a checkpoint is due (after each eval, at the end,
                                 and on Ctrl-C); `state_dict()` gives what to save for resuming
      task_metrics(model)     -- extra numbers to log at each eval (e.g. accuracy)
    """

    def __init__(
        self,
        model: nn.Module,
        get_batch: Callable[[str, torch.Generator], Batch],
        config: TrainConfig,
        *,
        task_metrics: Callable[[nn.Module], dict[str, float]] | None = None,
        on_step: Callable[[dict[str, Any]], None] | None = None,
        on_eval: Callable[[dict[str, Any]], None] | None = None,
        on_checkpoint: Callable[[Trainer, bool], None] | None = None,
    ) -> None:
        self.config = config
        self.dist = init_distributed(config.device)
        self.device = resolve_device(config.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if self.device.type == "cuda":
            # float32 matmuls on TF32 tensor cores (Ampere and newer): several times faster, and its
            # 10-bit mantissa is ample for training (nanoGPT does the same); bf16/fp16 autocast is faster still
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.model = model.to(self.device)
        self.get_batch = get_batch
        self.matmul = self._choose_cpu_matmul()
        self.task_metrics = task_metrics
        self.on_step, self.on_eval, self.on_checkpoint = on_step, on_eval, on_checkpoint
        self.optimizer = make_optimizer(self.model, config, self.device)
        # each rank of a distributed run draws its own batches
        self.batch_generator = torch.Generator().manual_seed(config.seed + self.dist.rank)

        # mixed precision: matmuls in bfloat16/float16, weights and optimizer state stay float32
        dtype = getattr(torch, config.dtype)
        if dtype == torch.float16 and self.device.type == "cpu":
            raise ConfigError("float16 training needs a GPU; on the CPU use --dtype bfloat16")
        self.autocast = (
            torch.autocast(self.device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=dtype == torch.float16)

        # what a training step calls: the task's loss, through DDP (gradient all-reduce) and compile
        self.loss_module: nn.Module = LossOf(self.model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.loss_module = DistributedDataParallel(self.loss_module, device_ids=ids)
        self.eager_loss_module = self.loss_module
        if config.compile:
            self.loss_module = torch.compile(self.loss_module)
        self.iter = 0  # optimizer steps taken
        self.elapsed = 0.0  # seconds of training so far (survives a resume)
        self.best_test_loss = math.inf
        self.interrupted = False
        self.last_checkpoint_time = 0.0  # elapsed seconds at the last checkpoint

    def _choose_cpu_matmul(self) -> str:
        """Route float32 CPU products through oneDNN where that is faster (see cpu_matmul.py)."""
        config = self.config
        if self.device.type != "cpu" or config.dtype != "float32" or config.compile:
            return "default"
        if config.cpu_matmul == "onednn":
            if not onednn_available():
                raise ConfigError("cpu_matmul onednn: this PyTorch build has no oneDNN")
            use_onednn_linear(self.model)
            return "onednn"
        if config.cpu_matmul == "auto":
            rows = self.get_batch("train", torch.Generator().manual_seed(0))[0].numel()  # tokens per micro-batch
            if use_onednn_where_it_pays(self.model, rows):
                return "onednn"
        return "default"

    # ---- the learning-rate schedule ----

    def progress(self, it: int | None = None, elapsed: float | None = None) -> float:
        """How far through its budget the run is, 0..1: the larger of the iteration and time fractions."""
        it = self.iter if it is None else it
        elapsed = self.elapsed if elapsed is None else elapsed
        fractions = []
        if self.config.max_iters is not None:
            fractions.append(it / self.config.max_iters)
        if self.config.max_time is not None:
            fractions.append(elapsed / self.config.max_time)
        return min(1.0, max(fractions))

    def lr_at(self, it: int, elapsed: float) -> float:
        cfg = self.config
        min_lr = cfg.lr / 10 if cfg.min_lr is None else cfg.min_lr
        if it < cfg.warmup_iters:
            return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
        cosine = 0.5 * (1.0 + math.cos(math.pi * self.progress(it, elapsed)))  # 1 -> 0
        return min_lr + cosine * (cfg.lr - min_lr)

    # ---- evaluation ----

    def to_device(self, batch: Batch) -> Batch:
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss on `eval_iters` fixed batches of each split, plus the task's own metrics."""
        self.model.eval()
        result = {}
        for split, key in (("train", "eval_train_loss"), ("test", "test_loss")):
            generator = torch.Generator().manual_seed(self.config.seed + 1)  # same batches every eval
            losses = []
            for _ in range(self.config.eval_iters):
                with self.autocast:
                    losses.append(self.model.loss(self.to_device(self.get_batch(split, generator))).item())
            result[key] = sum(losses) / len(losses)
        if self.task_metrics is not None:
            result.update(self.task_metrics(self.model))
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
        stop = self.done()
        if self.dist.enabled:
            flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = flag.item() > 0
            if stop and not self.done():
                self.interrupted = True  # another rank stopped (time up or Ctrl-C): stop with it
        return stop

    def step(self) -> dict[str, Any]:
        """One optimizer step (over `grad_accum` micro-batches); returns its metrics record."""
        cfg = self.config
        t0 = time.perf_counter()
        lr = self.lr_at(self.iter, self.elapsed)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total_loss = 0.0
        tokens = 0
        for micro in range(cfg.grad_accum):
            batch = self.to_device(self.get_batch("train", self.batch_generator))
            # DDP all-reduces gradients on the last micro-batch only
            last = micro == cfg.grad_accum - 1
            sync = (
                self.loss_module.no_sync()
                if self.dist.enabled and not last and hasattr(self.loss_module, "no_sync")
                else contextlib.nullcontext()
            )
            with sync, self.autocast:
                loss = self.compute_loss(batch) / cfg.grad_accum
            self.scaler.scale(loss).backward()
            total_loss += loss.item()
            tokens += batch[0].numel()
        if self.dist.enabled:  # every rank must agree to stop if any loss is not finite
            flag = torch.tensor([0.0 if math.isfinite(total_loss) else 1.0], device=self.device)
            torch.distributed.all_reduce(flag)
            total_loss = total_loss if flag.item() == 0 else math.nan
        if not math.isfinite(total_loss):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                f"the loss became {total_loss} at iteration {self.iter + 1}; stopping "
                "(the last checkpoint is kept; try a lower --lr)"
            )
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)  # frees the gradients instead of zeroing them
        self.iter += 1
        dt = time.perf_counter() - t0
        return {
            "iter": self.iter,
            "train_loss": total_loss,
            "lr": lr,
            "tokens_per_s": tokens * self.dist.world_size / dt,
        }

    def compute_loss(self, batch: Batch) -> torch.Tensor:
        """The loss through the compiled module; if compiling fails, warn once and go on eagerly."""
        if self.loss_module is self.eager_loss_module:
            return self.loss_module(batch)
        try:
            return self.loss_module(batch)
        except Exception as e:  # a missing C++ compiler, an unsupported op, ...
            warn_compile_failed(e, "training")
            self.loss_module = self.eager_loss_module
            return self.loss_module(batch)

    def run(self, progress_bar: bool = True) -> None:
        """Train until max_iters, max_time or Ctrl-C; evaluate and checkpoint along the way."""
        from tqdm.auto import tqdm

        self.model.train()
        previous_handler = self._catch_ctrl_c()
        bar = tqdm(
            total=100,
            disable=not (progress_bar and self.dist.is_main),
            bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}",
        )
        start = time.perf_counter() - self.elapsed
        self.last_checkpoint_time = self.elapsed
        stop = self.agree_to_stop()
        last_test = ""  # the latest test loss, shown in the progress bar
        try:
            while not stop:
                record = self.step()
                self.elapsed = time.perf_counter() - start
                record["elapsed_s"] = round(self.elapsed, 3)
                stop = self.agree_to_stop()
                evaluating = self.iter % self.config.eval_interval == 0 or (stop and not self.interrupted)
                if evaluating:
                    record.update(self.evaluate())
                    self.elapsed = time.perf_counter() - start
                if self.on_step:
                    self.on_step(record)
                bar.n = round(100 * self.progress(), 1)
                if evaluating:
                    last_test = f" test {record['test_loss']:.3f}"
                bar.set_postfix_str(
                    f"iter {self.iter} loss {record['train_loss']:.3f}{last_test} lr {record['lr']:.2e} "
                    f"{record['tokens_per_s']:,.0f} tok/s",
                    refresh=False,
                )
                bar.refresh()
                is_best = False
                if evaluating:
                    is_best = record["test_loss"] < self.best_test_loss
                    self.best_test_loss = min(self.best_test_loss, record["test_loss"])
                    if self.on_eval:
                        self.on_eval(record)
                if self.on_checkpoint and self.checkpoint_due(evaluating, start):
                    self.on_checkpoint(self, is_best)
                    self.last_checkpoint_time = time.perf_counter() - start
        finally:
            bar.close()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)

    def checkpoint_due(self, evaluated: bool, start: float) -> bool:
        """After each evaluation, every `checkpoint_interval` steps or `checkpoint_seconds`, at the end."""
        cfg = self.config
        if evaluated or self.done():
            return True
        if cfg.checkpoint_interval is not None and self.iter % cfg.checkpoint_interval == 0:
            return True
        since = time.perf_counter() - start - self.last_checkpoint_time
        return cfg.checkpoint_seconds is not None and since >= cfg.checkpoint_seconds

    def _catch_ctrl_c(self):
        """First Ctrl-C: finish this step, checkpoint, stop. A second one interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self.interrupted:
                raise KeyboardInterrupt
            self.interrupted = True

        return signal.signal(signal.SIGINT, handler)

    # ---- resuming ----

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to resume, split into tensors and JSON-able values (no pickle)."""
        tensors: dict[str, torch.Tensor] = {}
        opt = self.optimizer.state_dict()
        for index, state in opt["state"].items():
            for key, value in state.items():
                tensors[f"optimizer.{index}.{key}"] = value
        tensors["rng.batches"] = self.batch_generator.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = s
        meta = {
            "iter": self.iter,
            "elapsed_s": self.elapsed,
            "best_test_loss": self.best_test_loss if math.isfinite(self.best_test_loss) else None,
            "optimizer_param_groups": opt["param_groups"],
        }
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, value in tensors.items():
            if name.startswith("optimizer."):
                _, index, key = name.split(".", 2)
                state.setdefault(int(index), {})[key] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
        self.batch_generator.set_state(tensors["rng.batches"])
        torch.set_rng_state(tensors["rng.torch"])
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        self.iter = int(meta["iter"])
        self.elapsed = float(meta["elapsed_s"])
        best = meta.get("best_test_loss")
        self.best_test_loss = math.inf if best is None else float(best)
