"""Where and how training computes: the device, the precision, the processes, the compiler.

None of this changes *what* is learned; it changes how fast. Keeping it here leaves the training
loop (`training.py`) as plain as nanoGPT's: the loop asks the runtime for the device, for an
`autocast` context and a gradient scaler, and for the module to call for the loss.

- **Device**: `auto` picks CUDA, then Apple's MPS, then the CPU.
- **TF32** on CUDA: float32 products on TF32 tensor cores (Ampere and newer), several times faster
  with a 10-bit mantissa that is ample for training (nanoGPT does the same).
- **Mixed precision**: `--dtype bfloat16/float16` runs products under `torch.autocast`; weights
  and optimizer state stay float32. float16 needs a gradient scaler (its range is small).
- **Processes**: under `torchrun`, `process_group()` joins the job's process group and, on the
  way out, leaves it with every rank together; the loss module is wrapped in
  DistributedDataParallel, which averages gradients across ranks.
- **Compiling**: `--compile` runs the loss through `torch.compile`; if the compiler fails (no C++
  compiler, an unsupported op) `CompiledOrEager` warns once and goes on eagerly.
- **Speed tricks**: `speed_up` makes the one call to the `speed` package, which computes the same
  maths faster where the machine allows (a first read can skip it).
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn

from . import speed
from .config import TrainConfig
from .errors import ConfigError, TinyLLMError, warn_compile_failed

Batch = tuple[torch.Tensor, ...]


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


# ---- processes ----


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
        """Rank 0: the process that writes the run directory and prints."""
        return self.rank == 0


@contextlib.contextmanager
def process_group(device_name: str) -> Iterator[Distributed]:
    """Join the process group that `torchrun` describes in RANK/WORLD_SIZE/LOCAL_RANK, and leave it.

    NCCL between GPUs, gloo between CPU processes. Without torchrun this yields `Distributed()` and
    does nothing. On a normal exit every rank leaves together (a barrier, then the group is
    destroyed), as PyTorch asks of a process before it exits: left to interpreter shutdown, gloo's
    threads can abort the process. After an error, torchrun stops the other ranks.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        yield Distributed()
        return
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    joined_here = not dist.is_initialized()
    if joined_here:
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    yield Distributed(rank, world_size, local_rank)
    if joined_here:
        # A finished trainer's DistributedDataParallel wrapper holds the group; free it now, while
        # Python is fully alive, so that the group's threads are joined here and not at exit.
        gc.collect()
        dist.barrier()  # nobody tears down its connections while another rank still uses them
        dist.destroy_process_group()


# ---- the loss, as the training step calls it ----


class LossOf(nn.Module):
    """`forward(batch)` = `model.loss(batch)`: DistributedDataParallel and torch.compile wrap forward()."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model.loss(batch)


class CompiledOrEager:
    """Calls `torch.compile(module)`; if compiling fails, warns once and calls `module` from then on."""

    def __init__(self, module: nn.Module) -> None:
        self.eager = module
        self.compiled: nn.Module | None = torch.compile(module)

    def __call__(self, batch: Batch) -> torch.Tensor:
        if self.compiled is None:
            return self.eager(batch)
        try:
            return self.compiled(batch)
        except Exception as e:  # a missing C++ compiler, an unsupported op, ...
            warn_compile_failed(e, "training")
            self.compiled = None
            return self.eager(batch)


class Runtime:
    """The device, precision, processes and compiler of one training process."""

    def __init__(
        self, config: TrainConfig, dist: Distributed | None = None, speed_settings: speed.SpeedSettings | None = None
    ) -> None:
        self.config = config
        self.speed_settings = speed_settings or speed.SpeedSettings()
        self.speed_settings.check(config.dtype, config.compile)
        self.dist = dist or Distributed()
        self.device = resolve_device(config.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # see the module docstring
            torch.backends.cudnn.allow_tf32 = True
        dtype = getattr(torch, config.dtype)
        if dtype == torch.float16 and self.device.type == "cpu":
            raise ConfigError("float16 training needs a GPU; on the CPU use --dtype bfloat16")
        self.autocast = (
            torch.autocast(self.device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=dtype == torch.float16)
        self.speedups: list[str] = []  # what `speed.apply` did, in words

    def place(self, model: nn.Module) -> nn.Module:
        """Move `model` to the device."""
        return model.to(self.device)

    def speed_up(self, model: nn.Module, optimizers: list[torch.optim.Optimizer]) -> None:
        """Let the `speed` package compute the placed `model` and its `optimizers` faster on this machine."""
        self.speedups = speed.apply(
            model,
            optimizers,
            self.device,
            dtype=self.config.dtype,
            compile=self.config.compile,
            rows=_tokens_per_batch(model, self.config.batch_size),
            settings=self.speed_settings,
        )

    def loss_module(self, model: nn.Module) -> nn.Module | CompiledOrEager:
        """What a training step calls: the model's loss, through DDP (gradient all-reduce) and compile."""
        module: nn.Module = LossOf(model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=ids)
        return CompiledOrEager(module) if self.config.compile else module

    def no_sync(self, loss_module) -> contextlib.AbstractContextManager:
        """DDP's `no_sync()` (skip the gradient all-reduce of a micro-batch that is not the last)."""
        module = loss_module.eager if isinstance(loss_module, CompiledOrEager) else loss_module
        return module.no_sync() if hasattr(module, "no_sync") else contextlib.nullcontext()

    def any_rank(self, flag: bool) -> bool:
        """Whether `flag` holds on any rank of the job (so that every rank takes the same decision)."""
        if not self.dist.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return value.item() > 0

    def describe(self) -> str:
        """One line for the training log: device, threads, precision, processes."""
        parts = [
            f"device {self.device}" + (f" ({torch.get_num_threads()} threads)" if self.device.type == "cpu" else "")
        ]
        if self.speedups:
            parts.append("speed/: " + ", ".join(self.speedups))
        if self.dist.enabled:
            parts.append(f"{self.dist.world_size} processes (DDP)")
        if self.config.dtype != "float32":
            parts.append(self.config.dtype)
        if self.config.compile:
            parts.append("compiled")
        return " | ".join(parts)


def _tokens_per_batch(model: nn.Module, batch_size: int) -> int | None:
    """Tokens in a micro-batch of `batch_size` sequences of the model's context (None: not a GPT)."""
    configs = [m.config for m in model.modules() if hasattr(getattr(m, "config", None), "block_size")]
    return batch_size * configs[0].block_size if configs else None
