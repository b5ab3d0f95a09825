"""Training a task into a run directory, top to bottom.

`train()` is the whole story in named steps, in the order they run:

1. `resolve`: the task's defaults, a TOML file, then the caller's (or, to resume, the run's own);
2. `task.prepare`: data and tokenizer;
3. the model: `task.build_model(config)`, a GPT inside the task's model (which owns the loss);
4. `process_group` and `Runtime`: device, precision, processes;
5. the `Trainer`, whose events write the run directory (`rundir.py`);
6. `trainer.run()`, then the last plots and the result.

Loading a run back to sample from it or evaluate it is `inference.py`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .averaging import average_weights
from .checkpoint import load_model_tensors, load_tensors, read_json
from .errors import TinyLLMError, UsageError
from .model import GPTConfig
from .plots import plot_run
from .resolve import Settings, resolve
from .rundir import RunDirectory, check_new_run
from .runtime import Runtime, process_group
from .snapshots import take_snapshots
from .tasks import Task
from .tokenizer import tokenizer_from_dict
from .training import Trainer

# Drawing the PNGs takes time from the training budget like everything else: while training they
# are redrawn at an evaluation only when this many seconds have passed since the last drawing
# (about five times in a five-minute run), and always at the end.
PLOT_EVERY_S = 60.0


class Interrupted(TinyLLMError):
    """Training was stopped with Ctrl-C after saving a checkpoint (exit status 130)."""

    exit_code = 130


@dataclass
class TrainResult:
    run_dir: Path
    iters: int
    elapsed_s: float
    test_loss: float | None
    best_test_loss: float | None


def start_from(init: str | os.PathLike, settings: Settings, resume: bool, given: dict[str, Any]):
    """--init: take the model's shape and tokenizer from a run or a Hugging Face folder; return its weights."""
    from .hf import read_hf_folder

    if resume:
        raise UsageError("--init starts a new run from given weights; --resume continues a run: use one of them")
    if not settings.task.exports_to_hf:
        raise UsageError(f"--init is for the text and shakespeare tasks, not {settings.task.name}")
    source = RunDirectory(init)
    if (source.path / "config.json").is_file() and "task" in read_json(source.path / "config.json"):
        saved = source.read_config()
        config = GPTConfig.from_dict(saved["model"])
        tokenizer = tokenizer_from_dict(source.read_tokenizer())
        tensors, _ = load_tensors(source.path / "model.safetensors")
    else:
        config, tensors, tokenizer = read_hf_folder(init)
    shape = config.to_dict()
    model_overrides = {key: value for key, value in given.items() if key in shape and key != "vocab_size"}
    for key, value in model_overrides.items():
        if key != "dropout" and shape.get(key) != value:
            raise UsageError(f"cannot change {key} of an --init model (it has {shape.get(key)})")
    settings.model = {**shape, **model_overrides}
    settings.tokenizer = tokenizer
    return tensors


def train(
    task_name: str,
    *,
    out_dir: str | os.PathLike | None = None,
    settings: dict[str, Any] | None = None,
    config_file: str | None = None,
    task_options: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
    data_path: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress_bar: bool = True,
    init: str | os.PathLike | None = None,
    log=print,
) -> TrainResult:
    """Train task `task_name` into `out_dir` (default runs/TASK). Returns where it ended.

    `settings`: any setting by its name (`n_layer`, `max_time`, `lowercase`, ...), over `config_file`
    (TOML) over the task's defaults (`resolve.py`); `task_options`, `model_overrides` and
    `train_overrides` are the same, grouped. `init`: a run directory or a Hugging Face GPT-2 folder to
    start from (its weights and tokenizer)."""
    run = RunDirectory(out_dir if out_dir is not None else Path("runs") / task_name)
    # 1. settings
    given = {**(task_options or {}), **(model_overrides or {}), **(train_overrides or {}), **(settings or {})}
    resolved = resolve(task_name, given, config_file=config_file, resume_from=run if resume else None)
    initial_weights = None
    if init is not None:
        initial_weights = start_from(init, resolved, resume, given)
    task, train_config = resolved.task, resolved.train
    # 2. data and tokenizer
    task.prepare(data_path, tokenizer=resolved.tokenizer)
    # a new run's vocabulary is its tokenizer's; a resumed or --init model keeps its own (GPT-2s pad theirs)
    model_config = GPTConfig.from_dict({"vocab_size": task.tokenizer.vocab_size, **resolved.model})
    task.adopt(model_config)
    task.check_config(model_config)
    # 3. the model: the same seed gives the same initial weights
    torch.manual_seed(train_config.seed)
    model = task.build_model(model_config)
    if initial_weights is not None:
        load_model_tensors(model.gpt, initial_weights, Path(init))
    # 4. the runtime, for the whole life of the process group
    with process_group(train_config.device) as dist:
        runtime = Runtime(train_config, dist, resolved.speed)
        # 5. the trainer, and the run directory listening to it
        trainer = Trainer(
            model,
            lambda split, gen: task.get_batch(split, train_config.batch_size, model_config.block_size, gen),
            train_config,
            runtime=runtime,
            task_metrics=task.metrics,
        )
        average_weights(trainer)  # --ema-decay: end on the average of the last steps' weights
        if dist.is_main:  # in a torchrun job only rank 0 writes; every rank reads the checkpoint
            run.lock()
        try:
            resumed = _prepare_directory(run, trainer, resolved, model_config, resume, overwrite, dist.is_main, log)
            if dist.is_main:
                _write_run_as_it_trains(run, trainer, task, model_config.block_size)
                log(_describe(task_name, model, model_config, train_config, trainer, resumed_at=resumed))
                snapshot_mb = (train_config.snapshots + 1) * 2 * model.gpt.num_params() / 2**20  # 16-bit
                if snapshot_mb > 256:
                    log(
                        f"note: {train_config.snapshots + 1} snapshots of this model take {snapshot_mb:,.0f} MB "
                        "(--snapshots 0 keeps none)"
                    )
            # 6. train
            trainer.run(progress_bar=progress_bar)
        finally:
            run.unlock()
    return _finish(run, trainer, task_name, dist.is_main)


def _prepare_directory(run, trainer, settings, model_config, resume, overwrite, is_main, log) -> int | None:
    """Start the directory afresh or load its checkpoint; write config and tokenizer. Returns the
    iteration resumed at (None for a new run)."""
    if not resume:
        if is_main:
            check_new_run(run, overwrite)
            run.start_fresh()
    else:
        state = run.load_resume_state(trainer.model.gpt)
        if state is not None:
            trainer.load_state_dict(state)
        else:  # stopped before its first checkpoint: nothing to lose, start again
            log(f"{run.path} has no checkpoint yet: starting from iteration 0")
    if is_main:
        task = settings.task
        config = {
            "task": task.name,
            "task_options": task.task_options,
            "model": model_config.to_dict(),
            "train": settings.train.to_dict(),
            "speed": settings.speed.to_dict(),
        }
        try:
            run.write_config(config, task.tokenizer.to_json())
            run.open_metrics(keep_until=trainer.iter if resume else None)
        except OSError as e:
            raise TinyLLMError(f"cannot write the run directory {run.path}: {e.strerror or e}") from None
    return trainer.iter if resume else None


def _write_run_as_it_trains(run: RunDirectory, trainer: Trainer, task: Task, block_size: int) -> None:
    """The run directory's callbacks: a metrics line per step, snapshots, plots per evaluation, checkpoints."""

    sequences_per_step = trainer.config.batch_size * trainer.config.grad_accum * trainer.runtime.dist.world_size

    def log_step(trainer: Trainer, record: dict[str, Any]) -> None:
        epochs = task.epochs(trainer.iter * sequences_per_step * block_size)
        if epochs is not None:
            record["epoch"] = round(epochs, 4)  # passes over the training tokens so far
        if "test_loss" in record and task.loss_in_bits_per_char(record["test_loss"]) is not None:
            record["test_bits_per_char"] = task.loss_in_bits_per_char(
                record["test_loss"]
            )  # comparable across tokenizers
        run.append_metrics(record)

    drawn_at = -math.inf  # training seconds at the last drawing

    def redraw_plots(trainer: Trainer, record: dict[str, Any]) -> None:
        nonlocal drawn_at
        if trainer.elapsed - drawn_at >= PLOT_EVERY_S:
            plot_run(run.path, title=task.name)
            drawn_at = trainer.elapsed

    take_snapshots(trainer, run.path)  # the weights at moments along the way (snapshots.py)
    trainer.add_callback("step", log_step)
    trainer.add_callback("eval", redraw_plots)
    trainer.add_callback(
        "checkpoint", lambda trainer, is_best: run.save_checkpoint(trainer.model.gpt, trainer.state_dict(), is_best)
    )


def _describe(task_name, model, model_config, train_config, trainer, resumed_at) -> str:
    """The one line printed as training starts."""
    optimizer = train_config.optimizer
    budget = []
    if train_config.max_iters:
        budget.append(f"{train_config.max_iters} iterations")
    if train_config.max_time:
        budget.append(_format_seconds(train_config.max_time))
    layers = f"{model_config.n_layer} layer{'s' if model_config.n_layer != 1 else ''}"
    return (
        f"training {task_name}: {model.gpt.num_params() / 1e6:.2f}M parameters, {layers} x {model_config.n_embd} wide, "
        f"context {model_config.block_size}, vocab {model_config.vocab_size} | {trainer.runtime.describe()}"
        f" | {optimizer} | {train_config.batch_size * train_config.grad_accum} x {model_config.block_size} tokens per step"
        f" | until {' or '.join(budget)}" + (f" | resuming at iteration {resumed_at}" if resumed_at is not None else "")
    )


def _finish(run: RunDirectory, trainer: Trainer, task_name: str, is_main: bool) -> TrainResult:
    if not is_main:
        return TrainResult(run.path, trainer.iter, trainer.elapsed, None, None)
    plot_run(run.path, title=task_name)
    last = run.last_eval()
    best = trainer.best_test_loss if math.isfinite(trainer.best_test_loss) else None
    result = TrainResult(run.path, trainer.iter, trainer.elapsed, last.get("test_loss") if last else None, best)
    if trainer.interrupted:
        raise Interrupted(
            f"interrupted at iteration {trainer.iter}; checkpoint saved. Resume with: "
            f"tinyllm train {task_name} --out {run.path} --resume"
        )
    return result


def _format_seconds(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
