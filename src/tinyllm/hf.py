"""Moving weights between tinyllm's `GPT` and Hugging Face's `GPT2LMHeadModel`.

The architectures are the same, so the mapping is one-to-one: same names, same shapes, except that
GPT-2's original code used a "Conv1D" layer that stores linear weights transposed (in, out). This
is how the benchmarks run Hugging Face on exactly our weights, and how a test proves that our model
*is* GPT-2.

`tinyllm export RUN OUT` writes a run as a Hugging Face model folder (weights, config and
tokenizer), and `tinyllm import HF_DIR OUT` makes a run of a local GPT-2-family folder. Exporting
needs `transformers` (the `hf` extra: `pip install -e ".[hf]"`); importing reads only JSON and
safetensors, so it does not.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from .checkpoint import load_model_tensors, model_tensors, read_json, save_tensors
from .errors import CheckpointError, TinyLLMError, UsageError
from .model import GPT, GPTConfig

# Linear layers that GPT-2 stores as Conv1D, i.e. with the weight transposed
_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def to_hf_gpt2(model: GPT):
    """A `transformers.GPT2LMHeadModel` with the same config and weights as `model`."""
    cfg = model.config
    if cfg.positions != "learned":
        raise UsageError(
            f"a model with {cfg.positions} positions cannot be exported: GPT-2 has one learned embedding per "
            "position, and Hugging Face's GPT2LMHeadModel would place every token differently"
        )
    from transformers import GPT2Config, GPT2LMHeadModel

    hf_config = GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.block_size,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        activation_function="gelu_new",  # GELU, tanh approximation
        layer_norm_epsilon=1e-5,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    hf = GPT2LMHeadModel(hf_config)
    state = {}
    for name, tensor in model.state_dict().items():
        state[name] = tensor.t().contiguous() if name.endswith(_TRANSPOSED) else tensor
    if not cfg.bias:  # GPT-2 always has biases: zeros are the same function
        for name, tensor in hf.state_dict().items():
            if name.endswith(".bias") and name not in state:
                state[name] = torch.zeros_like(tensor)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith((".attn.bias", ".attn.masked_bias"))]  # causal-mask buffers
    if missing or unexpected:
        raise RuntimeError(f"weight mapping failed: missing {missing}, unexpected {unexpected}")
    return hf.to(model.transformer.wte.weight.device).eval()


def from_hf_gpt2(hf_model) -> GPT:
    """A tinyllm `GPT` with the weights of a `transformers.GPT2LMHeadModel`."""
    c = hf_model.config
    config = GPTConfig(
        vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd
    )
    model = GPT(config)
    ours = model.state_dict()
    state = {}
    for name, tensor in hf_model.state_dict().items():
        if name not in ours:
            continue  # causal-mask buffers of older transformers versions
        state[name] = tensor.t().contiguous() if name.endswith(_TRANSPOSED) else tensor
    model.load_state_dict(state, strict=True)
    return model.eval()


# ---- folders: `tinyllm export` and `tinyllm import` ----

GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # GELU with the tanh approximation, as ours


def _require_transformers():
    try:
        import transformers
    except ImportError:
        raise TinyLLMError(
            "this needs Hugging Face transformers: pip install -e '.[hf]' (or pip install transformers)"
        ) from None
    return transformers


def _check_empty_or_overwrite(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"{out} is not empty: pass --overwrite to replace what is in it")


def export_run(
    run_dir: str | os.PathLike, out: str | os.PathLike, *, checkpoint: str = "last", overwrite: bool = False
) -> Path:
    """Write a run as a Hugging Face model folder that `AutoModelForCausalLM.from_pretrained(out)` and
    `AutoTokenizer.from_pretrained(out)` load offline: config.json, model.safetensors,
    generation_config.json, tokenizer.json and tokenizer_config.json."""
    from .bpe import HFTokenizer, char_tokenizer_as_hf
    from .inference import load
    from .tokenizer import CharTokenizer

    out = Path(out)
    run = load(run_dir, checkpoint=checkpoint)
    if run.model.config.positions != "learned":
        to_hf_gpt2(run.model)  # refuses, saying why
    if not run.task.exports_to_hf:
        raise UsageError(
            f"a {run.task.name} run cannot be exported: its prompts are encoded by the task (padded, reversed, "
            "one token per number), which a Hugging Face tokenizer cannot do; export text and shakespeare runs"
        )
    _check_empty_or_overwrite(out, overwrite)
    transformers = _require_transformers()
    transformers.utils.logging.disable_progress_bar()  # no "Writing model shards" bars for a tiny model
    if isinstance(run.tokenizer, CharTokenizer):
        tokenizer = char_tokenizer_as_hf(run.tokenizer.chars, run.tokenizer.lowercase)
    elif isinstance(run.tokenizer, HFTokenizer):
        tokenizer = run.tokenizer
    else:
        raise UsageError(f"a {type(run.tokenizer).__name__} cannot be exported")
    hf = to_hf_gpt2(run.model)
    for holder in (hf.config, hf.generation_config):  # no end token: text goes on, as `tinyllm sample`'s
        holder.bos_token_id = holder.eos_token_id = holder.pad_token_id = None
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.tokenizer,
        model_max_length=run.model.config.block_size,
        clean_up_tokenization_spaces=False,
    )
    # write next to the destination, then move into place: a failure never leaves half a folder
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        hf.save_pretrained(tmp, safe_serialization=True)
        fast.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_hf_folder(folder: str | os.PathLike):
    """A local GPT-2-family Hugging Face folder as (GPTConfig, weights in tinyllm's names, tokenizer).

    Reads only JSON and safetensors (no transformers needed, nothing unpickled)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} has no config.json: not a Hugging Face model folder")
    config = read_json(folder / "config.json")
    model_type = config.get("model_type")
    if model_type != "gpt2":
        raise UsageError(
            f"{folder} holds a {model_type or 'unknown'} model; tinyllm's GPT is GPT-2's architecture (learned "
            "positions, LayerNorm, GELU, tied output layer), so only GPT-2-family models can be imported"
        )
    differences = [
        f"{key} {config[key]!r}"
        for key, ok in (
            ("activation_function", lambda v: v in GPT2_ACTIVATIONS),
            ("layer_norm_epsilon", lambda v: abs(v - 1e-5) < 1e-9),
            ("tie_word_embeddings", lambda v: v is True),
            ("scale_attn_weights", lambda v: v is True),
            ("scale_attn_by_inverse_layer_idx", lambda v: v is False),
            ("add_cross_attention", lambda v: v is False),
        )
        if key in config and not ok(config[key])
    ]
    if differences:
        raise UsageError(f"{folder}: this GPT-2 differs from tinyllm's ({', '.join(differences)})")
    weights_path = folder / "model.safetensors"
    if not weights_path.is_file():
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
        why = f" ({', '.join(pickled)} is a pickle, refused: it could run code)" if pickled else ""
        raise CheckpointError(f"{folder} has no model.safetensors: only safetensors weights are read{why}")
    try:
        hf_weights = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights_path} is not a valid safetensors file ({e})") from None
    gpt_config = GPTConfig(
        vocab_size=config["vocab_size"],
        block_size=config.get("n_positions", 1024),
        n_layer=config["n_layer"],
        n_head=config["n_head"],
        n_embd=config["n_embd"],
    )
    weights = {}
    for name, tensor in hf_weights.items():
        name = name if name.startswith(("transformer.", "lm_head.")) else f"transformer.{name}"  # GPT2Model's names
        if name.endswith((".attn.bias", ".attn.masked_bias")) or name == "lm_head.weight":
            continue  # causal-mask buffers of older files; the output layer is the tied embedding
        weights[name] = tensor.t().contiguous() if name.endswith(_TRANSPOSED) else tensor
    return gpt_config, weights, read_hf_tokenizer(folder)


def read_hf_tokenizer(folder: Path):
    """tokenizer.json, or GPT-2's vocab.json + merges.txt, as an `HFTokenizer`."""
    from .bpe import HFTokenizer

    if (folder / "tokenizer.json").is_file():
        return HFTokenizer.from_dict(read_json(folder / "tokenizer.json"))
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        bpe = models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"))
        tokenizer = Tokenizer(bpe)
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        return HFTokenizer(tokenizer)
    raise CheckpointError(f"{folder} has no tokenizer (tokenizer.json, or vocab.json and merges.txt)")


def import_hf(folder: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Make a `text` run (config.json, tokenizer.json, model.safetensors) from a Hugging Face GPT-2 folder."""
    from .config import TrainConfig
    from .rundir import RunDirectory, check_new_run
    from .tasks import get_task

    config, weights, tokenizer = read_hf_folder(folder)
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens, the model {config.vocab_size}"
        )
    model = GPT(config)
    load_model_tensors(model, weights, Path(folder) / "model.safetensors")
    task = get_task("text")(tokenizer="bpe" if tokenizer.kind == "BPE" else "char")
    run = RunDirectory(out)
    run.lock()
    try:
        check_new_run(run, overwrite)
        run.start_fresh()
        train = TrainConfig.from_dict(task.train_defaults).to_dict()
        record = {"task": "text", "task_options": task.task_options, "model": config.to_dict(), "train": train}
        run.write_config({**record, "imported_from": str(Path(folder).resolve())}, tokenizer.to_json())
        save_tensors(run.path / "model.safetensors", model_tensors(model), {"imported_from": str(folder)})
    finally:
        run.unlock()
    return run.path
