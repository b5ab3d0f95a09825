"""The same guarantees on a CUDA GPU. Skipped where there is none (CI has none): run them on a GPU with
`python -m pytest tests/test_cuda.py`."""

import math

import pytest
import torch

from tinyllm import GPT, GPTConfig, load, train
from tinyllm.kv_cache import KVCache
from tinyllm.plots import read_metrics
from tinyllm.sampling import SamplingParams, generate

from .conftest import TINY_MODEL, TINY_TRAIN

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CONFIG = dict(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64)


def sharp_model(device="cuda", sharpen=True):
    torch.backends.cuda.matmul.allow_tf32 = False  # exact float32 (a CUDA training run turns TF32 on)
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CONFIG)).eval()
    if sharpen:
        with torch.no_grad():
            model.transformer.wte.weight.mul_(20)  # clear-cut greedy choices
    return model.to(device)


@pytest.mark.parametrize("batch", [1, 4])
def test_cached_decoding_matches_recomputation_on_cuda(batch):
    model = sharp_model()
    seq = torch.randint(65, (batch, 64), generator=torch.Generator().manual_seed(1)).cuda()
    with torch.inference_mode():
        full = model(seq)
        cache = KVCache.for_model(model, batch)
        cached = [model(seq[:, :1], cache)] + [model(seq[:, t : t + 1], cache) for t in range(1, 64)]
    torch.testing.assert_close(torch.cat(cached, dim=1), full, rtol=0, atol=1e-4)
    greedy = SamplingParams(temperature=0)
    prompt = seq[:, :3]
    a = generate(model, prompt, 3 * 64, greedy, use_cache=True)  # crosses the window twice
    b = generate(model, prompt, 3 * 64, greedy, use_cache=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize("batch", [1, 4])
def test_compiled_decoding_matches_recomputation_on_cuda(batch):
    model = sharp_model()
    prompt = torch.randint(65, (batch, 3), generator=torch.Generator().manual_seed(3)).cuda()
    greedy = SamplingParams(temperature=0)
    a = generate(model, prompt, 3 * 64, greedy, compile=True)  # crosses the window twice
    b = generate(model, prompt, 3 * 64, greedy, use_cache=False)
    assert torch.equal(a, b)


def test_cuda_and_cpu_agree():
    cpu, gpu = sharp_model("cpu"), sharp_model("cuda")
    seq = torch.randint(65, (2, 64), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        torch.testing.assert_close(gpu(seq.cuda()).cpu(), cpu(seq), rtol=1e-4, atol=1e-3)


def test_seeded_sampling_is_reproducible_on_cuda():
    model = sharp_model(sharpen=False)  # a spread-out distribution, so that seeds matter
    prompt = torch.zeros(3, 1, dtype=torch.long, device="cuda")
    p = SamplingParams(temperature=1.0, top_p=0.9)

    def draw(seed):
        return generate(model, prompt, 50, p, generator=torch.Generator("cuda").manual_seed(seed))

    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))


@pytest.mark.parametrize("dtype,compile_model", [("bfloat16", False), ("float16", False), ("bfloat16", True)])
def test_training_on_cuda_learns_and_loads_on_cpu(tmp_path, dtype, compile_model):
    out = tmp_path / "run"
    train_overrides = {**TINY_TRAIN, "max_iters": 60, "device": "cuda", "dtype": dtype, "compile": compile_model}
    result = train(
        "shakespeare",
        out_dir=out,
        model_overrides=TINY_MODEL,
        train_overrides=train_overrides,
        progress_bar=False,
        log=lambda *a: None,
    )
    assert result.iters == 60
    evals = [r["test_loss"] for r in read_metrics(out / "metrics.jsonl") if "test_loss" in r]
    assert all(math.isfinite(x) for x in evals) and evals[-1] < evals[0]
    run = load(out, device="cpu")
    text = run.complete("the ", 20, seed=0)
    assert len(text) == 20
    gpu_run = load(out, device="cuda")
    ids = torch.tensor([run.tokenizer.encode("the king is dead")])
    with torch.inference_mode():
        torch.testing.assert_close(gpu_run.model(ids.cuda()).cpu(), run.model(ids), rtol=1e-4, atol=1e-3)
