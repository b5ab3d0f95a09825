"""The KV cache: cached logits and tokens equal recomputing the whole context, within and beyond the block."""

import pytest
import torch

from tinyllm.kv_cache import KVCache, window_start
from tinyllm.sampling import SamplingParams, generate

from .conftest import CONFIGS, make_model

# ---------------------------------------------------------------- KV cache parity


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("prompt_len", ["one", "block-1"])
def test_cached_logits_equal_recomputed_logits_at_every_position(cfg, batch, prompt_len):
    model = make_model(**cfg)
    T = cfg["block_size"]
    n_prompt = 1 if prompt_len == "one" else T - 1
    seq = torch.randint(cfg["vocab_size"], (batch, T), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full = model(seq)  # logits at every position, no cache
        cache = KVCache.for_model(model, batch)
        cached = [model(seq[:, :n_prompt], cache)]  # prefill
        for t in range(n_prompt, T):
            cached.append(model(seq[:, t : t + 1], cache))  # one token at a time
    cached = torch.cat(cached, dim=1)
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("prompt_len", ["one", "block-1"])
def test_greedy_tokens_identical_with_and_without_cache(cfg, batch, prompt_len):
    model = make_model(**cfg)
    n_prompt = 1 if prompt_len == "one" else cfg["block_size"] - 1
    prompt = torch.randint(cfg["vocab_size"], (batch, n_prompt), generator=torch.Generator().manual_seed(2))
    new = cfg["block_size"] - n_prompt
    greedy = SamplingParams(temperature=0)
    a = generate(model, prompt, new, greedy, use_cache=True)
    b = generate(model, prompt, new, greedy, use_cache=False)
    assert torch.equal(a, b)
    assert a.shape == (batch, n_prompt + new)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("shift", [1, 5, None])
def test_parity_beyond_block_size(cfg, shift):
    """3 x block_size new tokens: the window jumps several times, in both paths the same way."""
    model = make_model(**cfg)
    prompt = torch.randint(cfg["vocab_size"], (2, 3), generator=torch.Generator().manual_seed(3))
    new = 3 * cfg["block_size"]
    greedy = SamplingParams(temperature=0)
    a = generate(model, prompt, new, greedy, use_cache=True, shift=shift)
    b = generate(model, prompt, new, greedy, use_cache=False, shift=shift)
    assert a.shape == (2, 3 + new)
    assert torch.equal(a, b)
    # and sampled (not just greedy) decoding matches too, given the same seed
    p = SamplingParams(temperature=1.0, top_k=5)
    a = generate(model, prompt, new, p, use_cache=True, shift=shift, generator=torch.Generator().manual_seed(9))
    b = generate(model, prompt, new, p, use_cache=False, shift=shift, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_window_policy():
    # fits: no move; overflows: keep block_size - shift most recent tokens
    assert window_start(seq_len=16, start=0, block_size=16, shift=4) == 0
    assert window_start(seq_len=17, start=0, block_size=16, shift=4) == 5  # keeps 12 tokens
    assert window_start(seq_len=17, start=0, block_size=16, shift=1) == 2  # keeps 15: nanoGPT's crop
    assert window_start(seq_len=2, start=0, block_size=1, shift=1) == 1  # always at least one token


def test_prompt_longer_than_block_size_is_cropped_like_uncached():
    model = make_model(**CONFIGS[0])
    prompt = torch.randint(17, (1, 40))
    greedy = SamplingParams(temperature=0)
    a = generate(model, prompt, 10, greedy, use_cache=True)
    b = generate(model, prompt, 10, greedy, use_cache=False)
    assert torch.equal(a, b)


def test_cache_is_preallocated_and_refuses_misuse():
    model = make_model(**CONFIGS[1])
    cache = KVCache.for_model(model, 2)
    k0 = cache.layers[0].k
    assert k0.shape == (2, 4, 24 + 1, 8)  # block_size positions, and one spare that is never filled
    with torch.inference_mode():
        model(torch.zeros(2, 5, dtype=torch.long), cache)
        model(torch.zeros(2, 1, dtype=torch.long), cache)
        assert cache.length == 6 and cache.layers[0].k is k0  # filled in place, not reallocated
        with pytest.raises(ValueError, match="one token"):
            model(torch.zeros(2, 2, dtype=torch.long), cache)
        for _ in range(6, 24):
            model(torch.zeros(2, 1, dtype=torch.long), cache)
        assert cache.length == 24
        with pytest.raises(ValueError, match="KV cache is full"):  # not into the spare position
            cache.layers[0].update(torch.zeros(2, 4, 1, 8), torch.zeros(2, 4, 1, 8))
