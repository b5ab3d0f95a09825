"""The compiled decode step (`compile=True`): the same logits and tokens as the eager engine.

Compiling costs seconds per graph (tens of seconds on a machine's first compile, before Inductor's
disk cache has anything), so these tests share one small config and two batch sizes: the compiled
function is one per process, and its graphs are reused by every test after the first (the tests of
one file run in one test process: `--dist loadfile` in pyproject.toml).
"""

import pytest
import torch
from torch._dynamo.utils import counters

from tinyllm import sampling
from tinyllm.kv_cache import KVCache
from tinyllm.sampling import CompiledDecodeStep, SamplingParams, compiled_decode_step, generate

from .conftest import CONFIGS, make_model

CFG = CONFIGS[1]  # two blocks with four heads (CONFIGS[2], without biases, goes through the same code)


@pytest.mark.parametrize("batch", [1, 2])
def test_compiled_step_logits_equal_recomputed_logits_at_every_position(batch):
    cfg = CFG
    model = make_model(**cfg)
    T = cfg["block_size"]
    seq = torch.randint(cfg["vocab_size"], (batch, T), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full = model(seq)[:, 1:]  # logits at every position, no cache
        cache = KVCache.for_model(model, batch)
        model(seq[:, :1], cache)  # prefill one token; then every later position through the compiled step
        stepped = [compiled_decode_step(model, seq[:, t : t + 1].contiguous(), cache) for t in range(1, T)]
    assert cache.length == T  # filled to the last position, the one where the cache is full
    torch.testing.assert_close(torch.stack(stepped, dim=1), full, rtol=0, atol=1e-5)
    assert not compiled_decode_step.failed


def test_compiled_generation_matches_uncached_beyond_block_size():
    """3 x block_size new tokens (the window jumps), greedy and seeded sampling, batch 1 and 2."""
    cfg = CFG
    model = make_model(**cfg)
    new = 3 * cfg["block_size"]
    for batch in (1, 2):
        prompt = torch.randint(cfg["vocab_size"], (batch, 3), generator=torch.Generator().manual_seed(3))
        greedy = SamplingParams(temperature=0)
        a = generate(model, prompt, new, greedy, compile=True)
        b = generate(model, prompt, new, greedy, use_cache=False)
        assert a.shape == (batch, 3 + new) and torch.equal(a, b)
        p = SamplingParams(temperature=1.0, top_k=5)
        a = generate(model, prompt, new, p, compile=True, generator=torch.Generator().manual_seed(9))
        b = generate(model, prompt, new, p, use_cache=False, generator=torch.Generator().manual_seed(9))
        assert torch.equal(a, b)


def test_one_graph_serves_every_later_length_and_new_weights():
    """After the first steps of a batch size, no length and no change of weights compiles anew. (The
    file's other tests may have compiled this config's graphs already: they are the ones reused here.
    Their few graphs stay under dynamo's limit of 8 per function, past which it would run eagerly.)"""
    model = make_model(**CFG)
    prompt = torch.randint(CFG["vocab_size"], (2, 5), generator=torch.Generator().manual_seed(4))
    generate(
        model, prompt, 3, SamplingParams(temperature=0), compile=True
    )  # the first step's shapes, then the length as a symbol
    assert counters["stats"]["unique_graphs"] >= 1 and not compiled_decode_step.failed  # really compiled
    graphs = counters["stats"]["unique_graphs"]
    # every cache length up to full, and re-prefills past block_size: no new graph
    new = 3 * CFG["block_size"]
    out = generate(model, prompt, new, SamplingParams(temperature=0), compile=True)
    assert torch.equal(out, generate(model, prompt, new, SamplingParams(temperature=0), use_cache=False))
    # weights are inputs of the graph, not constants baked into it: changing them is seen
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = generate(model, prompt, 30, SamplingParams(temperature=0), compile=True)
    assert torch.equal(out, generate(model, prompt, 30, SamplingParams(temperature=0)))
    assert counters["stats"]["unique_graphs"] == graphs


def test_a_failing_compiler_warns_once_and_decodes_eagerly(monkeypatch, capsys):
    def broken_compile(fn, **options):
        def run(*args):
            raise RuntimeError("no C++ compiler found\nmore detail")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    step = CompiledDecodeStep()
    monkeypatch.setattr(sampling, "compiled_decode_step", step)
    model = make_model(**CONFIGS[0])
    prompt = torch.randint(17, (2, 3), generator=torch.Generator().manual_seed(5))
    out = generate(model, prompt, 40, SamplingParams(temperature=0), compile=True)
    assert torch.equal(out, generate(model, prompt, 40, SamplingParams(temperature=0)))
    assert step.failed
    err = capsys.readouterr().err
    assert err.count("warning: torch.compile failed (no C++ compiler found); decoding without it") == 1


def test_a_mistake_in_the_inputs_raises_and_keeps_compiling_on():
    model = make_model(**CONFIGS[1])
    cache = KVCache.for_model(model, 2)
    step = CompiledDecodeStep()
    with torch.inference_mode():
        model(torch.zeros(2, 24, dtype=torch.long), cache)  # the cache is full
        with pytest.raises(ValueError, match="longer than block_size"):
            step(model, torch.zeros(2, 1, dtype=torch.long), cache)
    assert not step.failed


def test_compile_needs_the_cache():
    model = make_model(**CONFIGS[0])
    with pytest.raises(ValueError, match="use_cache=False"):
        generate(model, torch.zeros(1, 1, dtype=torch.long), 5, compile=True, use_cache=False)
    with pytest.raises(ValueError, match="compile must be true or false"):
        generate(model, torch.zeros(1, 1, dtype=torch.long), 5, compile="yes")
