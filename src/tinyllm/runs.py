"""A run directory: training a task into it, and loading it back to sample or evaluate.

    runs/shakespeare/
      config.json          task, task options, model and training config (JSON)
      tokenizer.json       the vocabulary
      model.safetensors    the latest weights          (what `tinyllm sample` loads)
      best.safetensors     the weights with the lowest test loss so far
      resume.safetensors   latest weights + optimizer + RNG state + iteration (for --resume)
      metrics.jsonl        one JSON object per training step
      train_loss.png, test_loss.png, lr.png (+ one per task metric)

`train()` wires a task, the generic `Trainer`, checkpoints and plots together. `load()` gives a
`Run` with `.model`, `.tokenizer` and `.complete(prompt, ...)`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import (
    FORMAT_VERSION,
    atomic_write,
    load_model_tensors,
    load_tensors,
    model_tensors,
    read_json,
    save_tensors,
    write_json,
)
from .errors import CheckpointError, ConfigError, TinyLLMError, UsageError
from .model import GPT, GPTConfig
from .plots import plot_run, read_metrics
from .sampling import SamplingParams, generate, stream
from .tasks import Task, get_task
from .tokenizer import tokenizer_from_dict
from .training import TrainConfig, Trainer, resolve_device

RUN_MARKERS = ("config.json", "model.safetensors", "resume.safetensors", "metrics.jsonl")


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


def train(
    task_name: str,
    *,
    out_dir: str | os.PathLike | None = None,
    task_options: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
    data_path: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress_bar: bool = True,
    log=print,
) -> TrainResult:
    """Train task `task_name` into `out_dir` (default runs/TASK). Returns where it ended."""
    out = Path(out_dir) if out_dir is not None else Path("runs") / task_name
    model_overrides = dict(model_overrides or {})
    train_overrides = dict(train_overrides or {})

    if resume:
        saved = read_run_config(out)
        if saved["task"] != task_name:
            raise UsageError(f"{out} is a run of task {saved['task']!r}, not {task_name!r}")
        task = get_task(task_name)(**saved["task_options"])
        for key, value in model_overrides.items():
            if saved["model"].get(key) != value:
                raise UsageError(f"cannot change {key} when resuming (the run has {saved['model'].get(key)})")
        model_config = GPTConfig.from_dict(saved["model"])
        train_config = TrainConfig.from_dict({**saved["train"], **train_overrides})
        task.prepare(data_path, tokenizer=tokenizer_from_dict(read_json(out / "tokenizer.json")))
    else:
        task = get_task(task_name)(**(task_options or {}))
        if out.exists() and any((out / name).exists() for name in RUN_MARKERS) and not overwrite:
            raise UsageError(f"{out} already holds a run: pass --resume to continue it or --overwrite to replace it")
        train_config = TrainConfig.from_dict({**task.train_defaults, **train_overrides})
        task.prepare(data_path)
        model_config = GPTConfig.from_dict(
            {**task.model_defaults, **model_overrides, "vocab_size": task.tokenizer.vocab_size}
        )
    task.check_config(model_config)

    torch.manual_seed(train_config.seed)  # the same seed gives the same initial weights
    model = task.build_model(model_config)
    trainer = Trainer(
        model,
        lambda split, gen: task.get_batch(split, train_config.batch_size, model_config.block_size, gen),
        train_config,
        task_metrics=lambda m: task.metrics(m, trainer.device),
    )

    metrics_path = out / "metrics.jsonl"
    main = trainer.dist.is_main  # in a torchrun job only rank 0 writes; every rank reads the checkpoint
    metrics_file = None
    try:
        if main:
            out.mkdir(parents=True, exist_ok=True)
            if not os.access(out, os.W_OK):
                raise PermissionError(13, "Permission denied")
            for leftover in out.glob(".*.tmp*"):  # half-written files of a run killed mid-write
                leftover.unlink()
        if resume and (out / "resume.safetensors").exists():
            tensors, meta = load_tensors(out / "resume.safetensors")
            load_model_tensors(model.gpt, tensors, out / "resume.safetensors")
            trainer.load_state_dict(tensors, meta)
            if main:
                _truncate_metrics(metrics_path, trainer.iter)
        elif resume:  # stopped before its first checkpoint: nothing to lose, start again
            log(f"{out} has no checkpoint yet: starting from iteration 0")
            if main:
                _truncate_metrics(metrics_path, 0)
        elif main:
            metrics_path.unlink(missing_ok=True)
            for stale in ("model.safetensors", "best.safetensors", "resume.safetensors"):
                (out / stale).unlink(missing_ok=True)
        if main:
            run_config = {
                "format_version": FORMAT_VERSION,
                "task": task_name,
                "task_options": task.task_options,
                "model": model_config.to_dict(),
                "train": train_config.to_dict(),
            }
            write_json(out / "config.json", run_config)
            atomic_write(out / "tokenizer.json", task.tokenizer.to_json().encode())
            metrics_file = open(metrics_path, "a", encoding="utf-8")
    except OSError as e:
        raise TinyLLMError(f"cannot write the run directory {out}: {e.strerror or e}") from None

    def on_step(record: dict[str, Any]) -> None:
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()

    def on_eval(record: dict[str, Any]) -> None:
        plot_run(out, title=task_name)

    def on_checkpoint(trainer: Trainer, is_best: bool) -> None:
        state, meta = trainer.state_dict()
        weights = model_tensors(model.gpt)
        save_tensors(out / "resume.safetensors", {**weights, **state}, meta)
        save_tensors(out / "model.safetensors", weights, {"iter": trainer.iter})
        if is_best:
            save_tensors(out / "best.safetensors", weights, {"iter": trainer.iter, "test_loss": trainer.best_test_loss})

    if trainer.dist.is_main:  # in a torchrun job, only rank 0 writes the run directory
        trainer.on_step, trainer.on_eval, trainer.on_checkpoint = on_step, on_eval, on_checkpoint

    budget = []
    if train_config.max_iters:
        budget.append(f"{train_config.max_iters} iterations")
    if train_config.max_time:
        budget.append(f"{_format_seconds(train_config.max_time)}")
    log = log if trainer.dist.is_main else (lambda *a, **k: None)
    log(
        f"training {task_name}: {model.gpt.num_params() / 1e6:.2f}M parameters, "
        f"{model_config.n_layer} layer{'s' if model_config.n_layer != 1 else ''} x {model_config.n_embd} wide, "
        f"context {model_config.block_size}, "
        f"vocab {model_config.vocab_size} | device {trainer.device}"
        + (f" ({torch.get_num_threads()} threads)" if trainer.device.type == "cpu" else "")
        + (" | float32 products by oneDNN" if trainer.matmul == "onednn" else "")
        + f" | {train_config.batch_size * train_config.grad_accum} x {model_config.block_size} tokens per step"
        + (f" | {trainer.dist.world_size} processes (DDP)" if trainer.dist.enabled else "")
        + (f" | {train_config.dtype}" if train_config.dtype != "float32" else "")
        + (" | compiled" if train_config.compile else "")
        + f" | until {' or '.join(budget)}"
        + (f" | resuming at iteration {trainer.iter}" if resume else "")
    )
    try:
        trainer.run(progress_bar=progress_bar)
    finally:
        if metrics_file is not None:
            metrics_file.close()
    if not main:
        return TrainResult(out, trainer.iter, trainer.elapsed, None, None)
    plot_run(out, title=task_name)

    last = _last_eval(metrics_path)
    result = TrainResult(
        out,
        trainer.iter,
        trainer.elapsed,
        last.get("test_loss") if last else None,
        trainer.best_test_loss if math.isfinite(trainer.best_test_loss) else None,
    )
    if trainer.interrupted:
        raise Interrupted(
            f"interrupted at iteration {trainer.iter}; checkpoint saved. Resume with: "
            f"tinyllm train {task_name} --out {out} --resume"
        )
    return result


def _format_seconds(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _truncate_metrics(path: Path, last_iter: int) -> None:
    """Drop the metrics logged after the checkpoint we resume from: they will be logged again."""
    if not path.exists():
        return
    keep = [r for r in read_metrics(path) if r.get("iter", 0) <= last_iter]
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in keep).encode())


def _last_eval(path: Path) -> dict[str, Any] | None:
    evals = [r for r in read_metrics(path) if "test_loss" in r]
    return evals[-1] if evals else None


# ---------------------------------------------------------------- loading a run


def _stop_index(text: str, stops: list[str]) -> int:
    """Where the first stop string begins in `text`, or -1."""
    return min((text.find(s) for s in stops if s in text), default=-1)


def read_run_config(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"run directory not found: {run_dir}")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a run directory")
    if not (run_dir / "config.json").exists():
        raise CheckpointError(f"{run_dir} is not a tinyllm run (no config.json)")
    config = read_json(run_dir / "config.json")
    if not isinstance(config, dict) or not {"task", "model", "train"} <= set(config):
        raise CheckpointError(f"{run_dir / 'config.json'} is not a tinyllm run config")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{run_dir / 'config.json'} has format version {version}; this tinyllm reads up to {FORMAT_VERSION} "
            "(upgrade tinyllm)"
        )
    config.setdefault("task_options", {})
    return config


class Run:
    """A trained model, its tokenizer and its task, ready to complete prompts."""

    def __init__(self, run_dir: Path, model: GPT, task: Task, config: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.model = model
        self.task = task
        self.tokenizer = task.tokenizer
        self.config = config

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r}, task={self.task.name!r}, params={self.model.num_params():,})"

    @property
    def device(self) -> torch.device:
        return self.model.transformer.wte.weight.device

    def _prepare(self, prompt: str, seed: int | None, stop: str | list[str] | None, num_samples: int = 1):
        if not isinstance(prompt, str) or prompt == "":
            raise UsageError("the prompt is empty: give at least one character")
        ids = self.task.encode_prompt(prompt)
        idx = torch.tensor([ids] * num_samples, dtype=torch.long, device=self.device)
        generator = torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        stop_ids = [self.tokenizer.encode(s) for s in stops if s]
        return idx, generator, [s for s in stops if s], stop_ids

    def _sampling(self, temperature, top_k, top_p, min_p, repetition_penalty) -> SamplingParams:
        return SamplingParams(temperature, top_k, top_p, min_p, repetition_penalty)

    def stream(
        self,
        prompt: str,
        max_new_tokens: int | None = None,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        repetition_penalty: float = 1.0,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        use_cache: bool = True,
        compile: bool = False,
    ) -> Iterator[str]:
        """Yield the completion of `prompt` piece by piece, as it is generated.

        Text that might be the start of a stop string is held back until it is clear that it is
        not, so a stop string is never shown.
        """
        # everything is checked here, before the first piece is asked for (a generator would wait)
        params = self._sampling(temperature, top_k, top_p, min_p, repetition_penalty)
        max_new_tokens = self.task.default_max_new_tokens if max_new_tokens is None else max_new_tokens
        idx, generator, stops, stop_ids = self._prepare(prompt, seed, stop)
        options = dict(stop=stop_ids, use_cache=use_cache, generator=generator, compile=compile)
        tokens = stream(self.model, idx, max_new_tokens, params, **options)  # checks its arguments now
        return self._pieces(prompt, tokens, stops)

    def _pieces(self, prompt: str, tokens: Iterator[torch.Tensor], stops: list[str]) -> Iterator[str]:
        holdback = max((len(s) for s in stops), default=1) - 1
        text, shown = "", 0
        ids: list[int] = []
        for token in tokens:
            ids.append(int(token[0]))
            if not self.task.continues_text:
                continue
            text = self.tokenizer.decode(ids)
            cut = _stop_index(text, stops)
            if cut >= 0:
                yield text[shown:cut]
                return
            if len(text) - holdback > shown:
                yield text[shown : len(text) - holdback]
                shown = len(text) - holdback
        final = self.task.decode_completion(prompt, ids)
        cut = _stop_index(final, stops)
        final = final if cut < 0 else final[:cut]
        if final[shown:]:
            yield final[shown:]

    def complete(self, prompt: str, max_new_tokens: int | None = None, **options: Any) -> str:
        """The completion of `prompt` (without the prompt). Options as in `stream`."""
        return "".join(self.stream(prompt, max_new_tokens, **options))

    def sample(
        self,
        prompt: str,
        num_samples: int,
        max_new_tokens: int | None = None,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        repetition_penalty: float = 1.0,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        use_cache: bool = True,
        compile: bool = False,
    ) -> list[str]:
        """`num_samples` completions of one prompt, decoded as one batch (the prompt is prefilled once)."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise UsageError(f"num_samples must be an integer >= 1, got {num_samples}")
        params = self._sampling(temperature, top_k, top_p, min_p, repetition_penalty)
        max_new_tokens = self.task.default_max_new_tokens if max_new_tokens is None else max_new_tokens
        idx, generator, stops, stop_ids = self._prepare(prompt, seed, stop, num_samples)
        options = dict(stop=stop_ids, use_cache=use_cache, generator=generator, compile=compile)
        out = generate(self.model, idx, max_new_tokens, params, **options)
        texts = []
        for row in out[:, idx.shape[1] :].tolist():
            text = self.task.decode_completion(prompt, row)
            cut = _stop_index(text, stops)
            texts.append(text if cut < 0 else text[:cut])
        return texts


def load(run_dir: str | os.PathLike, *, checkpoint: str = "last", device: str = "cpu") -> Run:
    """Load a trained run: `tinyllm.load("runs/shakespeare").complete("to be")`.

    `checkpoint` is "last" (model.safetensors) or "best" (best.safetensors, lowest test loss).
    Only JSON and safetensors are read: loading never executes code from the run directory.
    """
    run_dir = Path(run_dir)
    if checkpoint not in ("last", "best"):
        raise UsageError(f"checkpoint must be 'last' or 'best', got {checkpoint!r}")
    config = read_run_config(run_dir)
    try:
        model_config = GPTConfig.from_dict(config["model"])
    except ConfigError as e:
        raise CheckpointError(f"{run_dir / 'config.json'}: {e}") from None
    tokenizer = tokenizer_from_dict(read_json(run_dir / "tokenizer.json"))
    if tokenizer.vocab_size != model_config.vocab_size:
        raise CheckpointError(
            f"{run_dir / 'tokenizer.json'} has {tokenizer.vocab_size} tokens but the model expects "
            f"{model_config.vocab_size}"
        )
    try:
        task = get_task(config["task"])(**config["task_options"])
    except (UsageError, TypeError) as e:
        raise CheckpointError(f"{run_dir / 'config.json'}: {e}") from None
    task.tokenizer = tokenizer
    weights_path = run_dir / ("model.safetensors" if checkpoint == "last" else "best.safetensors")
    if not weights_path.exists():
        raise CheckpointError(f"{run_dir} has no {weights_path.name} (has training saved a checkpoint yet?)")
    tensors, _ = load_tensors(weights_path)
    model = GPT(model_config)
    load_model_tensors(model, tensors, weights_path)
    model.to(resolve_device(device)).eval()
    return Run(run_dir, model, task, config)


def evaluate(run: Run, data_path: str | None = None, batches: int = 100, seed: int = 0) -> dict[str, Any]:
    """Test loss (and train loss) of a loaded run on `batches` fixed random batches, plus task metrics."""
    task = run.task
    task.prepare(data_path, tokenizer=run.tokenizer)
    task_model = task.wrap(run.model).eval()
    block_size = run.model.config.block_size
    batch_size = run.config["train"].get("batch_size", 32)
    result: dict[str, Any] = {"task": task.name, "run": str(run.run_dir)}
    with torch.no_grad():
        for split in ("train", "test"):
            generator = torch.Generator().manual_seed(seed)
            losses = []
            for _ in range(batches):
                batch = tuple(t.to(run.device) for t in task.get_batch(split, batch_size, block_size, generator))
                losses.append(task_model.loss(batch).item())
            result[f"{split}_loss"] = sum(losses) / len(losses)
        result.update(task.metrics(task_model, run.device, full=True))
    return result
