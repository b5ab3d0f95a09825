"""Saving and loading checkpoints: safetensors for tensors, JSON for everything else, never pickle.

`torch.load` unpickles, and unpickling a file can run arbitrary code; a model shared by a friend
should not be able to do that. So weights and optimizer state go to safetensors (a JSON header
plus raw tensor bytes) and configs to JSON. Every file is written atomically: to a temporary file
in the same folder, flushed to disk, then renamed over the old one. A crash or power cut mid-write
leaves the previous version intact, never half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from .errors import CheckpointError

FORMAT_VERSION = 1  # bumped when the run directory layout changes incompatibly


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, nothing between."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode())


def read_json(path: Path) -> Any:
    """Read a JSON file of a run, with a clear error naming the file if it is missing or broken."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"missing file: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path} is not valid JSON (truncated or not a tinyllm file)") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None) -> None:
    """Save named tensors (and JSON-able metadata) to a safetensors file, atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {"tinyllm": json.dumps(metadata or {})}
    atomic_write(path, safetensors_save(tensors, metadata=meta))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a safetensors file saved by `save_tensors`. Anything else is a clear `CheckpointError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"missing file: {path}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    try:
        tensors = safetensors_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        metadata = json.loads(header.get("__metadata__", {}).get("tinyllm", "{}"))
    except (SafetensorError, ValueError, TypeError, AttributeError):
        # a pickle renamed to .safetensors, a truncated file, random bytes: refused, never executed
        raise CheckpointError(
            f"{path} is not a valid safetensors file (truncated, corrupt or another format)"
        ) from None
    return tensors, metadata


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights, each stored once: the tied output matrix is the token embedding."""
    state = model.state_dict()
    state.pop("lm_head.weight", None)
    return state


def load_model_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Copy `tensors` into `model`, refusing missing, unexpected or wrongly-shaped weights by name."""
    expected = model_tensors(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        raise CheckpointError(f"{path} does not match the model config: {'; '.join(parts)}")
    for name, value in expected.items():
        if tensors[name].shape != value.shape:
            raise CheckpointError(
                f"{path} does not match the model config: {name} has shape {tuple(tensors[name].shape)}, "
                f"the config needs {tuple(value.shape)}"
            )
    weights = {k: tensors[k] for k in expected}
    model.load_state_dict(weights, strict=False)  # lm_head.weight is tied to wte, so it is absent
