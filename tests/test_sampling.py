"""The sampler: every logits processor, the draw, seeds, stop sequences and streaming."""

import pytest
import torch
import torch.nn.functional as F

from tinyllm.errors import UsageError
from tinyllm.sampling import (
    SamplingParams,
    apply_min_p,
    apply_repetition_penalty,
    apply_top_k,
    apply_top_p,
    generate,
    sample_next,
    stream,
)

from .conftest import CONFIGS, make_model

# ---------------------------------------------------------------- logits processors

LOGITS = torch.tensor([[2.0, 1.0, 0.5, 0.5, -1.0, 3.0]])


def test_top_k_keeps_exactly_k_with_deterministic_ties():
    out = apply_top_k(LOGITS, 3)
    assert torch.isfinite(out).sum() == 3
    assert torch.isfinite(out[0, [5, 0, 1]]).all()
    # tokens 2 and 3 tie for third place: the lower id wins, every time
    out = apply_top_k(LOGITS, 4)
    assert torch.isfinite(out[0, 2]) and not torch.isfinite(out[0, 3])


def test_top_p_keeps_the_nucleus():
    probs = torch.tensor([[0.5, 0.25, 0.15, 0.07, 0.03]])
    logits = probs.log()
    keep = lambda p: torch.isfinite(apply_top_p(logits, p))[0].tolist()  # noqa: E731
    assert keep(0.5) == [True, False, False, False, False]  # 0.5 alone reaches 0.5
    assert keep(0.6) == [True, True, False, False, False]
    assert keep(0.9) == [True, True, True, False, False]  # 0.9 reached exactly with three
    assert keep(0.91) == [True, True, True, True, False]
    assert keep(1e-6) == [True, False, False, False, False]  # never empty


def test_min_p_is_relative_to_the_top_token():
    probs = torch.tensor([[0.5, 0.25, 0.15, 0.07, 0.03]])
    kept = torch.isfinite(apply_min_p(probs.log(), 0.3))[0].tolist()
    assert kept == [True, True, True, False, False]  # threshold 0.3 * 0.5 = 0.15


def test_repetition_penalty():
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    seq = torch.tensor([[0, 1, 0]])
    out = apply_repetition_penalty(logits, seq, 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0, 0.5]]  # positive divided, negative multiplied, others kept


def test_temperature_zero_is_argmax():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 50, generator=gen)
    seq = torch.zeros(8, 1, dtype=torch.long)
    assert torch.equal(sample_next(logits, seq, SamplingParams(temperature=0)), logits.argmax(-1))


def _draws(params, logits, n=3000):
    gen = torch.Generator().manual_seed(0)
    seq = torch.zeros(n, 1, dtype=torch.long)
    return set(sample_next(logits.expand(n, -1), seq, params, gen).tolist())


def test_sampling_never_leaves_the_filtered_set():
    probs = torch.tensor([[0.3, 0.25, 0.2, 0.1, 0.08, 0.07]])
    logits = probs.log()
    assert _draws(SamplingParams(top_k=2), logits) == {0, 1}
    assert _draws(SamplingParams(top_p=0.7), logits) == {0, 1, 2}  # 0.3+0.25 < 0.7 <= 0.75
    assert _draws(SamplingParams(min_p=0.5), logits) == {0, 1, 2}  # >= 0.15
    assert _draws(SamplingParams(), logits) == set(range(6))


def test_sampled_frequencies_follow_the_distribution():
    probs = torch.tensor([[0.6, 0.3, 0.1]])
    gen = torch.Generator().manual_seed(0)
    draws = sample_next(probs.log().expand(20000, -1), torch.zeros(20000, 1, dtype=torch.long), SamplingParams(), gen)
    freq = torch.bincount(draws, minlength=3).float() / 20000
    torch.testing.assert_close(freq, probs[0], atol=0.015, rtol=0)
    # temperature 0.5 squares the odds: p ~ p^2
    draws = sample_next(
        probs.log().expand(20000, -1), torch.zeros(20000, 1, dtype=torch.long), SamplingParams(temperature=0.5), gen
    )
    freq = torch.bincount(draws, minlength=3).float() / 20000
    torch.testing.assert_close(freq, F.softmax(probs.log()[0] / 0.5, -1), atol=0.015, rtol=0)


@pytest.mark.parametrize(
    "kw",
    [
        {"temperature": -0.1},
        {"temperature": float("nan")},
        {"top_k": 0},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"min_p": -0.1},
        {"min_p": 1.1},
        {"repetition_penalty": 0.0},
    ],
)
def test_bad_sampling_values(kw):
    with pytest.raises(UsageError):
        SamplingParams(**kw)


def test_bad_lengths():
    model = make_model(**CONFIGS[0])
    with pytest.raises(UsageError, match="max_new_tokens"):
        generate(model, torch.zeros(1, 1, dtype=torch.long), -1)
    with pytest.raises(UsageError, match="at least one token"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 5)
    assert generate(model, torch.zeros(1, 2, dtype=torch.long), 0).shape == (1, 2)


# ---------------------------------------------------------------- the decode loop


def test_seed_reproduces_and_another_seed_differs():
    model = make_model(sharpen=False, **CONFIGS[2])
    prompt = torch.zeros(1, 1, dtype=torch.long)
    run = lambda seed: model.generate(prompt, 50, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    torch.manual_seed(123)
    a = run(1)
    torch.manual_seed(456)  # the global RNG plays no part
    assert torch.equal(run(1), a)
    assert not torch.equal(run(2), a)


def test_stop_sequences_end_generation():
    model = make_model(**CONFIGS[0])
    prompt = torch.zeros(1, 1, dtype=torch.long)
    free = generate(model, prompt, 30, SamplingParams(temperature=0))[0, 1:].tolist()
    stop = free[5:7]
    first = next(i for i in range(len(free) - 1) if free[i : i + 2] == stop)
    out = generate(model, prompt, 30, SamplingParams(temperature=0), stop=[stop])[0, 1:].tolist()
    assert out == free[: first + 2]  # ends right after the stop sequence


def test_streaming_yields_each_step():
    model = make_model(**CONFIGS[1])
    prompt = torch.zeros(2, 3, dtype=torch.long)
    steps = list(stream(model, prompt, 7, SamplingParams(temperature=0)))
    assert len(steps) == 7 and all(s.shape == (2,) for s in steps)
    assert torch.equal(torch.stack(steps, 1), generate(model, prompt, 7, SamplingParams(temperature=0))[:, 3:])


def test_batched_samples_are_distinct_streams():
    model = make_model(sharpen=False, **CONFIGS[2])  # a flat distribution: rows should differ
    out = generate(model, torch.zeros(4, 2, dtype=torch.long), 30, generator=torch.Generator().manual_seed(0))
    rows = {tuple(r) for r in out[:, 2:].tolist()}
    assert len(rows) == 4


def test_generate_method_restores_training_mode():
    model = make_model(**CONFIGS[0]).train()
    model.generate(torch.zeros(1, 1, dtype=torch.long), 3)
    assert model.training
