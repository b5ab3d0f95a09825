"""The runs a server shows: found by name inside one folder, loaded once, reloaded when retrained.

The page asks for the runs list every 5 seconds and for the chosen run's new metrics every 2, and
a long run's metrics.jsonl has many thousands of lines: each file is parsed again only when its
size or modification time changed.

A run's NAME is its folder's name, directly inside the served folder. A name is looked up only
among the folders that are there -- never joined onto a path -- so `../../etc/passwd`, an absolute
path or a symlink that leads outside cannot reach anything but a "no such run" error.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..batching import MAX_BATCH, MAX_QUEUE, DecodeLoop
from ..errors import CheckpointError, TinyLLMError
from ..inference import Run, load
from ..model import GPTConfig
from ..plots import read_metrics
from ..rundir import RunDirectory
from ..snapshots import missing_step_message, snapshot_path, snapshot_steps
from ..tasks import TASKS, Task

LOADED_RUNS = 4  # models kept in memory at once (least recently used dropped first)
LOADED_SNAPSHOTS = 64  # snapshots kept loaded: every step of four runs at the default 16 (+1); ~1.5 MB each
LOADED_SNAPSHOT_BYTES = 2 * 2**30  # and at most this much of their weights (a fine-tuned GPT-2 is 0.5 GB a step)


class RunNotFound(TinyLLMError):
    """No run of that name in the served folder (a 404)."""


class RunLibrary:
    """The runs of one folder (or one run folder served on its own)."""

    def __init__(self, root: Path, only: str | None = None, max_batch: int = MAX_BATCH, max_queue: int = MAX_QUEUE):
        self.root = root.resolve()
        self.only = only  # serving one run folder: its name
        self.max_batch, self.max_queue = max_batch, max_queue
        self._loaded: OrderedDict[str, tuple[float, Run]] = OrderedDict()
        self._snapshots: OrderedDict[tuple[str, int], tuple[int, Run]] = OrderedDict()  # (name, step) -> (stamp, run)
        self._records: dict[str, tuple[tuple[int, int], list[dict[str, Any]]]] = {}  # name -> (file stamp, records)
        self._lock = threading.Lock()
        self._loading = threading.Lock()

    def names(self) -> list[str]:
        if self.only is not None:
            return [self.only]
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and (p / "config.json").is_file() and self._inside(p)
        )

    def _inside(self, path: Path) -> bool:
        return path.resolve().parent == self.root  # a symlink to elsewhere is not a run of this folder

    def path(self, name: str) -> Path:
        """The folder of run `name`, which must be one of `names()`."""
        if not isinstance(name, str) or name not in self.names():
            raise RunNotFound(f"no run named {name!r} here")
        return self.root / name

    # ---- what the runs list shows ----

    def summary(self, name: str) -> dict[str, Any]:
        run = RunDirectory(self.path(name))
        config = run.read_config()
        records = self._records_of(name, run.path / "metrics.jsonl")
        tests = [r["test_loss"] for r in records if "test_loss" in r]
        task = TASKS.get(config["task"], Task)
        files = [run.path / f for f in ("metrics.jsonl", "model.safetensors", "config.json") if (run.path / f).exists()]
        modified = max(f.stat().st_mtime for f in files)
        return {
            "name": name,
            "task": config["task"],
            "params": _count_params(config["model"]),
            "model": config["model"],
            "steps": records[-1]["iter"] if records else 0,
            "best_test_loss": min(tests) if tests else None,
            "modified": modified,
            "training": bool(records) and time.time() - modified < 30,  # written in the last 30 s
            "has_weights": (run.path / "model.safetensors").exists(),
            "continues_text": task.continues_text,  # the page shows the prompt before the completion
            "example_prompt": task.example_prompt,
        }

    def metrics(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        return [r for r in self.records(name) if r.get("iter", 0) > since]

    def records(self, name: str) -> list[dict[str, Any]]:
        """The run's metrics.jsonl records (none if it has no file yet), parsed again only when it changed."""
        return self._records_of(name, self.path(name) / "metrics.jsonl")

    def _records_of(self, name: str, path: Path) -> list[dict[str, Any]]:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return []
        stamp = (stat.st_mtime_ns, stat.st_size)  # an append changes the size even within one clock tick
        with self._lock:
            cached = self._records.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            records = read_metrics(path)
        except CheckpointError:
            records = []
        with self._lock:
            self._records[name] = (stamp, records)
        return records

    # ---- loaded models ----

    def run(self, name: str) -> Run:
        """The loaded run, reloaded when its weights changed on disk (a training wrote a checkpoint)."""
        weights = self.path(name) / "model.safetensors"
        if not weights.exists():
            raise CheckpointError(f"{name} has no weights yet (has training saved a checkpoint?)")
        with self._loading:  # one load at a time: requests arriving together share it
            stamp = weights.stat().st_mtime_ns
            return self._cached(self._loaded, name, stamp) or self._load(name, stamp)

    def _cached(self, cache: OrderedDict, key: Any, stamp: int) -> Run | None:
        """The run kept in `cache` under `key`, if it was loaded from the file as it is now (`stamp`)."""
        with self._lock:
            kept = cache.get(key)
            if kept is None or kept[0] != stamp:
                return None
            cache.move_to_end(key)  # the most recently used is dropped last
            return kept[1]

    def _load(self, name: str, stamp: int) -> Run:
        run = load(self.path(name))
        with self._lock:
            replaced = self._loaded.get(name)
            self._loaded[name] = (stamp, run)
            self._loaded.move_to_end(name)
            dropped = [replaced[1]] if replaced is not None else []
            while len(self._loaded) > LOADED_RUNS:
                dropped.append(self._loaded.popitem(last=False)[1][1])
        for old in dropped:
            old.close()  # its decode loop's thread ends once its generations are done
        return run

    def snapshot_steps(self, name: str) -> list[int]:
        return snapshot_steps(self.path(name))

    def run_at(self, name: str, step: int | None) -> Run:
        """The run at the snapshot of `step` (None: its latest weights). Snapshots are loaded once and
        kept (the most recently used `LOADED_SNAPSHOTS`), so moving along the slider is quick."""
        if step is None:
            return self.run(name)
        path = snapshot_path(self.path(name), step)
        if not path.is_file():
            raise CheckpointError(missing_step_message(self.path(name), step, nearest_only=True))
        key = (name, step)
        stamp = path.stat().st_mtime_ns  # a run trained again with --overwrite writes new snapshots
        cached = self._cached(self._snapshots, key, stamp)
        if cached is not None:
            return cached
        run = self.run(name).at_step(step)
        with self._lock:
            self._snapshots[key] = (stamp, run)
            self._snapshots.move_to_end(key)
            while len(self._snapshots) > 1 and (
                len(self._snapshots) > LOADED_SNAPSHOTS or self._snapshot_bytes() > LOADED_SNAPSHOT_BYTES
            ):
                self._snapshots.popitem(last=False)
        return run

    def _snapshot_bytes(self) -> int:
        return sum(4 * run.model.num_params() for _, run in self._snapshots.values())

    def decode_loop(self, name: str) -> tuple[Run, DecodeLoop]:
        """The loaded run and its decode loop, stepping in its own thread."""
        run = self.run(name)
        loop = run.decode_loop(self.max_batch, self.max_queue)
        loop.start()
        return run, loop


def _count_params(model: dict[str, Any]) -> int | None:
    """Parameters of a model config, without building the model (tied output layer counted once)."""
    try:
        c = GPTConfig.from_dict(model)
    except TinyLLMError:
        return None
    C, bias = c.n_embd, 1 if c.bias else 0
    # per block: 12 C^2 weights (qkv 3, out 1, MLP 4 + 4), 2 LayerNorm gains, 11 C of biases
    per_block = 12 * C * C + 2 * C + 11 * C * bias
    return (c.vocab_size + c.block_size) * C + c.n_layer * per_block + C * (1 + bias)
