"""How to train: `TrainConfig`, every knob of the training loop with its default and the reason for it.

A task overrides some defaults (see each task's `train_defaults`); a `--config` TOML file overrides
the task; command-line flags override the file. Each field is a `setting` (see `settings.py`), so
its check below is the only validation there is, and its help text is the flag's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import ConfigError
from .settings import (
    boolean,
    check_fields,
    duration,
    fraction,
    from_dict,
    non_negative_int,
    non_negative_number,
    optional,
    positive_int,
    positive_number,
    probability,
    setting,
)


def _device(name: str, value: Any) -> None:
    if not isinstance(value, str) or (value not in ("auto", "cpu", "cuda", "mps") and not value.startswith("cuda:")):
        raise ConfigError(f"{name} must be auto, cpu, cuda or mps, got {value!r}")


@dataclass
class TrainConfig:
    """How to train. A task overrides some defaults; the command line overrides anything."""

    # -- the batch --
    batch_size: int = setting(32, "sequences per micro-batch", positive_int)
    grad_accum: int = setting(1, "micro-batches per optimizer step (a bigger batch in the same memory)", positive_int)
    # -- the learning rate: warm up, then a cosine decay to a floor --
    lr: float = setting(1e-3, "peak learning rate, reached after warm-up", positive_number)
    min_lr: float | None = setting(
        None, "learning rate at the end of the cosine decay (default: lr / 10)", optional(non_negative_number)
    )
    warmup_iters: int = setting(100, "iterations of linear warm-up (Adam's early steps are noisy)", non_negative_int)
    schedule: str = setting(
        "cosine",
        "cosine (warm up, then a cosine to the floor) or wsd (warm up, stay, then decay over the last --decay-fraction)",
        choices=("cosine", "wsd"),
    )
    decay_fraction: float = setting(0.2, "wsd: the last part of the budget spent decaying to the floor", probability)
    ema_decay: float = setting(
        0.0,
        "average the weights over the last --decay-fraction of the budget, keeping this much of the average a step"
        " (0.995: about the last 200 steps, at most a quarter of that part's steps), and end the run on the average;"
        " 0: off (averaging.py)",
        fraction,
    )
    # -- when to stop: whichever budget runs out first --
    max_iters: int | None = setting(5000, "stop after N optimizer steps", optional(positive_int))
    max_time: float | None = setting(
        None, "stop after this long: 300, 90s, 5m, 1h", optional(positive_number), parse=duration
    )
    # -- the optimizer --
    optimizer: str = setting(
        "adamw", "adamw, or muon for the hidden matrices (AdamW for the rest; see optim.py)", choices=("adamw", "muon")
    )
    muon_lr_scale: float = setting(
        1.0, "muon: its rate as a multiple of --lr (the hidden matrices; AdamW keeps --lr)", positive_number
    )
    weight_decay: float = setting(0.1, "AdamW weight decay (matrices only)", non_negative_number)
    beta1: float = setting(0.9, "Adam's beta1 (momentum)", fraction)
    beta2: float = setting(0.99, "Adam's beta2: a bit below the usual 0.999, as small batches are noisy", fraction)
    grad_clip: float = setting(1.0, "clip the global gradient norm (0: off)", non_negative_number)
    # -- evaluation and checkpoints --
    eval_interval: int = setting(
        250, "evaluate (and checkpoint) every N steps; the plots are redrawn at most once a minute", positive_int
    )
    eval_iters: int = setting(20, "batches per split in each evaluation (the same batches every time)", positive_int)
    checkpoint_interval: int | None = setting(
        None, "checkpoint every N steps (default: at each evaluation)", optional(positive_int)
    )
    checkpoint_seconds: float | None = setting(
        None, "and/or every this many seconds", optional(positive_number), parse=duration, flag=False
    )
    snapshots: int = setting(
        16,
        "keep the weights at N moments, dense early (log-spaced), plus the last step, in snapshots/ as 16-bit"
        " floats: the page's step slider and --checkpoint step:N read them (0: none)",
        non_negative_int,
    )
    # -- the machine --
    seed: int = setting(1337, "random seed (a CPU run with the same seed repeats exactly)", non_negative_int)
    device: str = setting("auto", "auto (cuda, then mps, then cpu), cpu, cuda or mps", _device)
    dtype: str = setting(
        "float32", "autocast precision: float32, bfloat16 or float16", choices=("float32", "bfloat16", "float16")
    )
    compile: bool = setting(False, "torch.compile the model (falls back to eager with a warning)", boolean)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.min_lr is not None and self.min_lr > self.lr:
            raise ConfigError(f"min_lr must be in [0, lr], got {self.min_lr}")
        if self.max_iters is None and self.max_time is None:
            raise ConfigError("set max_iters or max_time (or both): training needs an end")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        return from_dict(cls, values, "training")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
