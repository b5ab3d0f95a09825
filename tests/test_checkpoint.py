import pickle

import pytest
import torch

import tinyllm
from tinyllm import GPT, GPTConfig
from tinyllm.checkpoint import load_model_tensors, load_tensors, model_tensors, save_tensors
from tinyllm.errors import CheckpointError


def test_round_trip_gives_identical_logits(tmp_path):
    config = GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16)
    torch.manual_seed(1)
    a = GPT(config).eval()
    save_tensors(tmp_path / "m.safetensors", model_tensors(a), {"iter": 7})
    torch.manual_seed(2)
    b = GPT(config).eval()
    tensors, meta = load_tensors(tmp_path / "m.safetensors")
    load_model_tensors(b, tensors, tmp_path / "m.safetensors")
    x = torch.randint(13, (2, 16))
    assert torch.equal(a(x), b(x))
    assert meta == {"iter": 7}
    assert b.lm_head.weight is b.transformer.wte.weight  # still tied after loading
    assert "lm_head.weight" not in tensors  # stored once


def test_load_returns_a_usable_run(tiny_run):
    run = tinyllm.load(tiny_run)
    again = tinyllm.load(tiny_run)
    x = torch.randint(run.model.config.vocab_size, (1, 8))
    assert torch.equal(run.model(x), again.model(x))
    text = run.complete("to be", max_new_tokens=20, temperature=0.8, top_k=5, seed=3)
    assert len(text) == 20 and set(text) <= set(run.tokenizer.chars)
    assert run.complete("to be", max_new_tokens=20, temperature=0.8, top_k=5, seed=3) == text
    best = tinyllm.load(tiny_run, checkpoint="best")
    assert best.model.config == run.model.config


def test_shape_mismatch_names_the_file_and_tensor(tmp_path):
    small = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=1, n_head=2, n_embd=16))
    save_tensors(tmp_path / "m.safetensors", model_tensors(small))
    wide = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=1, n_head=2, n_embd=32))
    tensors, _ = load_tensors(tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"m\.safetensors.*shape"):
        load_model_tensors(wide, tensors, tmp_path / "m.safetensors")


class Boom:
    def __reduce__(self):
        return (open, ("/tmp/tinyllm-pwned", "w"))


def test_pickle_renamed_to_safetensors_is_refused_and_never_executed(tiny_run, tmp_path):
    import shutil
    from pathlib import Path

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    marker = Path("/tmp/tinyllm-pwned")
    marker.unlink(missing_ok=True)
    (run / "model.safetensors").write_bytes(pickle.dumps({"w": Boom()}))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        tinyllm.load(run)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "missing", "garbage"])
def test_damaged_weights_are_clear_errors(tiny_run, tmp_path, damage):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    weights = run / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        tinyllm.load(run)


def test_newer_format_version_is_refused(tiny_run, tmp_path):
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    config["format_version"] = 99
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="format version 99"):
        tinyllm.load(run)
