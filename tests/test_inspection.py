"""The inspection path is the model's own maths, written out."""

import math

import pytest
import torch

from tinyllm import GPT, GPTConfig
from tinyllm.inspection import STAGES, fourier_norms, logit_lens, pca_2d, sampler_stages, trace
from tinyllm.sampling import SamplingParams, process_logits


def model(**kw):
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(**{"vocab_size": 31, "block_size": 16, "n_layer": 2, "n_head": 4, "n_embd": 32, **kw})).eval()
    with torch.no_grad():  # make every weight matter
        for p in gpt.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return gpt


@pytest.mark.parametrize(
    "options", [{"bias": True}, {"bias": False}, {"positions": "abacus", "abacus_size": 18, "abacus_marker": 11}]
)
def test_trace_is_the_models_forward(options):
    gpt = model(**options)
    idx = torch.randint(31, (1, 16))
    idx[0, :6] = torch.tensor([1, 2, 10, 3, 4, 11])  # digits, a '+' and the marker: abacus positions vary
    traced = trace(gpt, idx)
    with torch.no_grad():
        torch.testing.assert_close(traced["logits"], gpt(idx)[0], rtol=0, atol=1e-5)
    assert traced["attention"].shape == (2, 4, 16, 16)
    assert traced["residuals"].shape == (3, 16, 32)


def test_attention_rows_sum_to_one_and_never_look_ahead():
    attention = trace(model(), torch.randint(31, (1, 12)))["attention"]
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 4, 12))
    upper = torch.ones(12, 12, dtype=torch.bool).triu(1)
    assert (attention[..., upper] == 0).all()


def test_recombining_the_weights_with_the_values_reproduces_the_logits():
    """Rebuild the forward pass from the traced attention weights alone: the same logits."""
    gpt = model()
    idx = torch.randint(31, (1, 10))
    traced = trace(gpt, idx)
    tf = gpt.transformer
    with torch.no_grad():
        x = tf.wte(idx) + tf.wpe.weight[:10]
        for layer, block in enumerate(tf.h):
            _, _, v = block.attn.c_attn(block.ln_1(x)).split(32, dim=2)
            v = v.view(1, 10, 4, 8).transpose(1, 2)  # (1, heads, T, head_dim)
            y = (traced["attention"][layer][None] @ v).transpose(1, 2).reshape(1, 10, 32)
            x = x + block.attn.c_proj(y)
            x = x + block.mlp(block.ln_2(x))
        torch.testing.assert_close(gpt.lm_head(tf.ln_f(x)), gpt(idx), rtol=0, atol=1e-5)


def test_logit_lens_last_layer_is_the_models_output():
    gpt = model()
    idx = torch.randint(31, (1, 9))
    traced = trace(gpt, idx)
    probs, ids = logit_lens(gpt, traced["residuals"], top=3)
    assert probs.shape == (3, 9, 3)
    with torch.no_grad():
        expected = gpt(idx)[0].softmax(-1).topk(3)
    torch.testing.assert_close(probs[-1], expected.values, rtol=0, atol=1e-6)
    assert torch.equal(ids[-1], expected.indices)


def test_sampler_stages_follow_the_samplers_own_processors():
    torch.manual_seed(1)
    logits, seq = torch.randn(40) * 3, torch.tensor([1, 2, 3, 2])
    params = SamplingParams(temperature=0.7, top_k=10, top_p=0.8, min_p=0.1, repetition_penalty=1.3)
    stages = sampler_stages(logits, seq, params)
    assert len(stages) == len(STAGES)
    for stage in stages:
        assert math.isclose(stage.sum().item(), 1.0, rel_tol=1e-5)
    # the last stage is exactly the distribution the sampler draws from
    final = process_logits(logits[None], seq[None], params).softmax(-1)[0]
    torch.testing.assert_close(stages[-1], final)
    kept = [int((s > 0).sum()) for s in stages]
    assert kept[:3] == [40, 40, 40] and kept[3] == 10 and kept[5] <= kept[4] <= 10  # filters only remove
    assert torch.equal(stages[1] > 0, stages[0] > 0)


def test_greedy_puts_everything_on_the_argmax():
    stages = sampler_stages(torch.tensor([0.1, 2.0, 1.0]), torch.tensor([0]), SamplingParams(temperature=0))
    assert stages[-1].tolist() == [0.0, 1.0, 0.0]


def test_pca_and_fourier_views():
    points = pca_2d(torch.randn(20, 8))
    assert points.shape == (20, 2)
    P = 97
    k = torch.arange(P)[:, None].float()
    waves = torch.cat([torch.cos(2 * math.pi * 5 * k / P), torch.sin(2 * math.pi * 5 * k / P)], dim=1)
    norms = fourier_norms(waves @ torch.randn(2, 16))
    assert norms.argmax().item() == 5 and norms[5] > 0.99  # one frequency explains these embeddings
