"""The run directory: everything one training leaves on disk, its format, and its one writer.

    runs/shakespeare/
      .lock                the training's lock (holds its process id); see "One writer" below
      config.json          format version, task, task options, model and training config (JSON)
      tokenizer.json       the vocabulary (the task's tokenizer, as JSON)
      model.safetensors    the latest weights                       (what sample/eval load)
      best.safetensors     the weights with the lowest test loss so far      (--checkpoint best)
      resume.safetensors   latest weights + optimizer + random states + counters  (--resume)
      metrics.jsonl        one JSON object per training step (test_loss etc. on evaluation steps)
      snapshots/           step_<N>.safetensors: the weights at moments along the way (snapshots.py)
      train_loss.png, test_loss.png, lr.png (+ one per task metric, e.g. accuracy.png)

Every file is written atomically (`checkpoint.atomic_write`: a temporary file, then a rename), so a
reader -- `tinyllm sample`, `eval`, `plot`, a second terminal -- sees the old version or the new
one, never half a file; metrics.jsonl is only appended to, one whole line at a time.

**The resume file** holds, besides the weights under their model names, the optimizer's tensors as
`optimizer.<parameter index>.<name>` (AdamW: `exp_avg`, `exp_avg_sq`, `step`; with `--optimizer
muon`, Muon's as `muon.<parameter index>.<name>`), the random states as
`rng.batches` (the generator that draws training batches), `rng.torch` and `rng.cuda.<device>`,
with `--ema-decay` the weights' running average as `average.<parameter index>`, and in its JSON
metadata the iteration, the seconds trained, the best test loss and the optimizers' parameter groups. Nothing in it is pickled.

**One writer.** A training holds an OS-level advisory lock (`flock`) on `.lock` for its whole life;
the kernel releases it when the process ends, however it ends (a SIGKILL leaves no stale lock). A
second training into a locked directory -- with `--resume`, `--overwrite` or neither -- stops at
once with an error that names the process holding it, having touched nothing. Readers never lock.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

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
from .errors import CheckpointError, TinyLLMError, UsageError
from .plots import read_metrics
from .snapshots import load_snapshot, parse_step, remove_snapshots

try:
    import fcntl
except ImportError:  # Windows: no flock; a run directory is then not protected from a second writer
    fcntl = None

WEIGHTS = {"last": "model.safetensors", "best": "best.safetensors"}
RESUME = "resume.safetensors"
MARKERS = ("config.json", WEIGHTS["last"], RESUME, "metrics.jsonl")  # any of these: a run is here


class RunLockedError(TinyLLMError):
    """Another training is writing this run directory."""


class RunDirectory:
    """One run's folder: reading it (anyone) and writing it (the one training that holds the lock)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock_file: IO[str] | None = None
        self._metrics: IO[str] | None = None

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    def holds_a_run(self) -> bool:
        return self.path.is_dir() and any((self.path / name).exists() for name in MARKERS)

    # ---- reading ----

    def read_config(self) -> dict[str, Any]:
        """config.json, checked: a clear error for a missing folder, a foreign file or a newer format."""
        path = self.path / "config.json"
        if not self.path.exists():
            raise CheckpointError(f"run directory not found: {self.path}")
        if not self.path.is_dir():
            raise CheckpointError(f"{self.path} is not a run directory")
        if not path.exists():
            raise CheckpointError(f"{self.path} is not a tinyllm run (no config.json)")
        config = read_json(path)
        if not isinstance(config, dict) or not {"task", "model", "train"} <= set(config):
            raise CheckpointError(f"{path} is not a tinyllm run config")
        version = config.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"{path} has format version {version}; this tinyllm reads up to {FORMAT_VERSION} (upgrade tinyllm)"
            )
        config.setdefault("task_options", {})
        return config

    def read_tokenizer(self) -> Any:
        """tokenizer.json's contents (`tokenizer.tokenizer_from_dict` makes the tokenizer)."""
        return read_json(self.path / "tokenizer.json")

    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path / "metrics.jsonl")

    def last_eval(self) -> dict[str, Any] | None:
        evals = [r for r in self.metrics() if "test_loss" in r]
        return evals[-1] if evals else None

    def load_weights(self, model: torch.nn.Module, checkpoint: str = "last") -> None:
        """Copy the `checkpoint` ("last", "best" or "step:N", a snapshot) weights into `model` (a `GPT`)."""
        step = parse_step(checkpoint)
        if step is not None:
            load_model_tensors(model, load_snapshot(self.path, step), self.path / "snapshots")
            return
        path = self.path / WEIGHTS[checkpoint]
        if not path.exists():
            raise CheckpointError(f"{self.path} has no {path.name} (has training saved a checkpoint yet?)")
        tensors, _ = load_tensors(path)
        load_model_tensors(model, tensors, path)

    # ---- writing: only while holding the lock ----

    def lock(self) -> None:
        """Take the directory's lock (creating the directory), or fail at once naming who holds it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if not os.access(self.path, os.W_OK):
                raise PermissionError(13, "Permission denied")
            lock_file = open(self.path / ".lock", "a+", encoding="utf-8")  # "a+": never truncates on open
        except OSError as e:
            raise TinyLLMError(f"cannot write the run directory {self.path}: {e.strerror or e}") from None
        if fcntl is not None:
            try:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock_file.seek(0)
                holder = lock_file.read().strip() or "another process"
                lock_file.close()
                raise RunLockedError(
                    f"{self.path} is being written by a training in process {holder}: wait for it to end, "
                    "or train into another --out"
                ) from None
        lock_file.truncate(0)
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        self._lock_file = lock_file
        for leftover in self.path.glob(".*.tmp*"):  # half-written files of a training killed mid-write
            leftover.unlink()

    def unlock(self) -> None:
        """Close the metrics file and release the lock (the kernel also does it when the process ends)."""
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the flock
            self._lock_file = None

    def _check_locked(self) -> None:
        if self._lock_file is None:
            raise RuntimeError(f"{self.path}: take the lock before writing")

    def start_fresh(self) -> None:
        """Remove the files of an earlier run (after `--overwrite`)."""
        self._check_locked()
        for name in ("metrics.jsonl", WEIGHTS["last"], WEIGHTS["best"], RESUME):
            (self.path / name).unlink(missing_ok=True)
        remove_snapshots(self.path)

    def write_config(self, config: dict[str, Any], tokenizer_json: str) -> None:
        self._check_locked()
        write_json(self.path / "config.json", {"format_version": FORMAT_VERSION, **config})
        atomic_write(self.path / "tokenizer.json", tokenizer_json.encode())

    def open_metrics(self, keep_until: int | None = None) -> None:
        """Open metrics.jsonl for appending; when resuming, first drop the records logged after
        iteration `keep_until` (the checkpoint resumed from): they will be logged again."""
        self._check_locked()
        path = self.path / "metrics.jsonl"
        if keep_until is not None and path.exists():
            keep = [r for r in read_metrics(path) if r.get("iter", 0) <= keep_until]
            atomic_write(path, "".join(json.dumps(r) + "\n" for r in keep).encode())
        self._metrics = open(path, "a", encoding="utf-8")

    def append_metrics(self, record: dict[str, Any]) -> None:
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()

    def save_checkpoint(self, model: torch.nn.Module, state: dict[str, Any], is_best: bool) -> None:
        """Write the resume file, then the latest weights (and the best ones, if these are)."""
        self._check_locked()
        weights = model_tensors(model)
        tensors, meta = _flatten_resume_state(state)
        save_tensors(self.path / RESUME, {**weights, **tensors}, meta)
        save_tensors(self.path / WEIGHTS["last"], weights, {"iter": state["iter"]})
        if is_best:
            best = {"iter": state["iter"], "test_loss": state["best_test_loss"]}
            save_tensors(self.path / WEIGHTS["best"], weights, best)

    def load_resume_state(self, model: torch.nn.Module) -> dict[str, Any] | None:
        """Load the resume file's weights into `model`; return the trainer's state (None: no checkpoint yet)."""
        path = self.path / RESUME
        if not path.exists():
            return None
        tensors, meta = load_tensors(path)
        state = _unflatten_resume_state(tensors, meta, path)
        weights = {k: v for k, v in tensors.items() if not k.startswith(("optimizer.", "muon.", "rng.", "average."))}
        load_model_tensors(model, weights, path)
        return state


def _flatten_resume_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A trainer's `state_dict()` as safetensors tensors and JSON metadata (the names in the docstring)."""
    optimizer, muon = state["optimizer"], state.get("muon")
    tensors: dict[str, torch.Tensor] = {}
    for prefix, saved in (("optimizer", optimizer), ("muon", muon)):
        for index, param_state in (saved or {"state": {}})["state"].items():
            for key, value in param_state.items():
                tensors[f"{prefix}.{index}.{key}"] = value
    tensors["rng.batches"] = state["batch_rng"]
    tensors["rng.torch"] = state["torch_rng"]
    for i, cuda_state in enumerate(state["cuda_rng"]):
        tensors[f"rng.cuda.{i}"] = cuda_state
    for i, average in enumerate(state.get("weight_average") or []):
        tensors[f"average.{i}"] = average
    meta = {
        "iter": state["iter"],
        "elapsed_s": state["elapsed_s"],
        "best_test_loss": state["best_test_loss"],
        "optimizer_param_groups": optimizer["param_groups"],
    }
    if muon is not None:
        meta["muon_param_groups"] = muon["param_groups"]
    return tensors, meta


def _unflatten_resume_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> dict[str, Any]:
    states: dict[str, dict[int, dict[str, torch.Tensor]]] = {"optimizer": {}, "muon": {}}
    for name, value in tensors.items():
        if name.startswith(("optimizer.", "muon.")):
            prefix, index, key = name.split(".", 2)
            states[prefix].setdefault(int(index), {})[key] = value
    muon_groups = meta.get("muon_param_groups")
    averages = sum(name.startswith("average.") for name in tensors)
    try:
        return {
            "optimizer": {"state": states["optimizer"], "param_groups": meta["optimizer_param_groups"]},
            "muon": None if muon_groups is None else {"state": states["muon"], "param_groups": muon_groups},
            "batch_rng": tensors["rng.batches"],
            "torch_rng": tensors["rng.torch"],
            "cuda_rng": [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")],
            "iter": meta["iter"],
            "elapsed_s": meta["elapsed_s"],
            "best_test_loss": meta.get("best_test_loss"),
            "weight_average": [tensors[f"average.{i}"] for i in range(averages)] or None,
        }
    except KeyError as e:
        raise CheckpointError(f"{path} is not a tinyllm resume file (no {e.args[0]})") from None


def check_new_run(run: RunDirectory, overwrite: bool) -> None:
    if run.holds_a_run() and not overwrite:
        raise UsageError(f"{run.path} already holds a run: pass --resume to continue it or --overwrite to replace it")
