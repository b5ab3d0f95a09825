"""The decode loop that steps many generations together: the same logits and tokens as each alone,
rows that join and leave at different steps, a failing generation, cancelling, a full queue."""

from __future__ import annotations

import pytest
import torch

import tinyllm.batching as batching
import tinyllm.sampling as sampling
from tinyllm.batching import DecodeLoop, Generation, QueueFull
from tinyllm.model import GPT, GPTConfig
from tinyllm.sampling import SamplingParams, stream

from .conftest import CONFIGS

ABACUS = dict(vocab_size=14, block_size=24, n_layer=2, n_head=2, n_embd=32, positions="abacus", abacus_marker=12)


def make_model(config: dict) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**config)).eval()


def recording(monkeypatch, module) -> dict:
    """Record the logits each generator's sampler call sees, by generator."""
    seen: dict[torch.Generator, list[torch.Tensor]] = {}
    original = module.sample_next

    def sample_next(logits, seq, params, generator=None):
        generators = generator if isinstance(generator, list) else [generator]  # rows sampled together
        for row, g in enumerate(generators):
            seen.setdefault(g, []).append(logits[row : row + 1].detach().clone())
        return original(logits, seq, params, generator)

    monkeypatch.setattr(module, "sample_next", sample_next)
    return seen


def alone(model, prompt, max_new, params, seed, stop=()):
    generator = torch.Generator().manual_seed(seed)
    idx = torch.tensor([prompt])
    tokens = [int(t) for t in stream(model, idx, max_new, params, stop=list(stop), generator=generator)]
    return tokens, generator


@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[2], ABACUS], ids=["learned", "no-bias", "abacus"])
@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_each_row_gets_the_logits_and_tokens_it_gets_alone(monkeypatch, config, temperature):
    model = make_model(config)
    V = config["vocab_size"]
    params = SamplingParams(temperature=temperature, top_k=8 if temperature else None)
    # prompts of different lengths (one past the window), leaving at different steps, two joining late
    jobs = [([1], 5), ([3, 4, 5], 40), ([2] * 7, 12), ([i % V for i in range(30)], 30), ([6, 7], 25), ([8], 9)]
    seen = recording(monkeypatch, batching)
    loop = DecodeLoop(model, max_batch=4)
    gens = []
    for i, (prompt, max_new) in enumerate(jobs):
        if i == 4:  # the last two join after three steps, while the others are mid-way
            for _ in range(3):
                loop.step()
        gens.append(loop.submit(Generation(prompt, max_new, params, torch.Generator().manual_seed(i))))
    loop.run_until_done()
    batched = {g.generator: seen[g.generator] for g in gens}

    monkeypatch.undo()
    seen = recording(monkeypatch, sampling)
    for i, ((prompt, max_new), g) in enumerate(zip(jobs, gens, strict=True)):
        tokens, generator = alone(model, prompt, max_new, params, seed=i)
        assert g.tokens == tokens and g.finished and g.error is None
        reference = seen[generator]
        assert len(reference) == len(batched[g.generator]) == max_new
        for step, (a, b) in enumerate(zip(batched[g.generator], reference, strict=True)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=f"generation {i}, step {step}")
    assert loop.cache.rows == 0 and not loop.active  # every row freed


def test_stop_sequences_end_a_row_early_and_the_others_go_on():
    model = make_model(CONFIGS[1])
    params = SamplingParams(temperature=0)
    free, _ = alone(model, [1, 2], 30, params, seed=0)
    stop = free[5:7]  # a pair the greedy text will produce
    loop = DecodeLoop(model)
    stopped = loop.submit(Generation([1, 2], 30, params, torch.Generator(), stop=[stop]))
    other = loop.submit(Generation([3], 30, params, torch.Generator()))
    loop.run_until_done()
    expected, _ = alone(model, [1, 2], 30, params, seed=0, stop=[stop])
    assert stopped.tokens == expected and len(expected) < 30 and stopped.tokens[-2:] == stop
    assert other.tokens == alone(model, [3], 30, params, seed=0)[0]


def test_a_failing_generation_never_stops_the_others(monkeypatch):
    model = make_model(CONFIGS[1])
    params = SamplingParams(temperature=0)
    loop = DecodeLoop(model)
    bad_prompt = loop.submit(Generation([1, 99], 10, params, torch.Generator()))  # 99: not in the vocabulary
    good = loop.submit(Generation([1, 2], 20, params, torch.Generator()))
    failing = loop.submit(Generation([4, 5], 20, params, torch.Generator()))
    original = batching.sample_next

    def broken_for_one(logits, seq, p, generator=None):  # fails on its row, alone or sampled with others
        if failing.generator in (generator if isinstance(generator, list) else [generator]) and failing.n > 4:
            raise RuntimeError("boom")
        return original(logits, seq, p, generator)

    monkeypatch.setattr(batching, "sample_next", broken_for_one)
    loop.run_until_done()
    assert bad_prompt.finished and "generation failed" in bad_prompt.error and bad_prompt.tokens == []
    assert failing.finished and "boom" in failing.error and len(failing.tokens) == 3  # its sequence reached 5
    assert good.error is None and good.tokens == alone(model, [1, 2], 20, params, seed=0)[0]
    again = loop.submit(Generation([1, 2], 20, params, torch.Generator()))  # the loop goes on serving
    loop.run_until_done()
    assert again.tokens == good.tokens


def test_a_cancelled_generation_frees_its_row_at_the_next_step():
    model = make_model(CONFIGS[1])
    loop = DecodeLoop(model, max_batch=3)
    gens = [loop.submit(Generation([i + 1], 50, SamplingParams(), torch.Generator())) for i in range(3)]
    loop.step()
    assert loop.cache.rows == 3
    gens[0].cancel()
    loop.step()
    assert loop.cache.rows == 2 and gens[0] not in loop.active and gens[0].finished
    assert len(gens[0].tokens) == 1  # no token after the cancel
    assert all(len(g.tokens) == 2 for g in gens[1:])


def test_beyond_max_batch_generations_wait_and_beyond_max_queue_they_are_refused():
    model = make_model(CONFIGS[1])
    loop = DecodeLoop(model, max_batch=2, max_queue=1)
    gens = [loop.submit(Generation([1], 3, SamplingParams(), torch.Generator())) for _ in range(3)]
    with pytest.raises(QueueFull, match="try again"):
        loop.submit(Generation([1], 3, SamplingParams(), torch.Generator()))
    loop.step()
    assert loop.busy() == (2, 1)  # two decoding, one waiting for a row
    loop.run_until_done()
    assert all(len(g.tokens) == 3 for g in gens)


def test_the_server_thread_decodes_and_ends_when_closed():
    import threading

    model = make_model(CONFIGS[1])
    loop = DecodeLoop(model)
    done = threading.Event()
    g = Generation([1, 2], 15, SamplingParams(temperature=0), torch.Generator())
    g.notify = lambda: g.finished and done.set()
    loop.start()
    loop.submit(g)
    assert done.wait(30)
    thread = loop._thread
    loop.close()
    thread.join(10)
    assert not thread.is_alive() and loop._thread is None
    assert g.tokens == alone(model, [1, 2], 15, SamplingParams(temperature=0), seed=0)[0]
    # a generation that arrives after the close (a request already on its way) is still decoded
    late = Generation([1, 2], 15, SamplingParams(temperature=0), torch.Generator())
    ended = threading.Event()
    late.notify = lambda: late.finished and ended.set()
    loop.submit(late)
    assert ended.wait(30) and late.tokens == g.tokens
