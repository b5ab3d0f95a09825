import pytest
import torch
import torch.nn.functional as F

from tinyllm import GPT, GPTConfig
from tinyllm.errors import ConfigError
from tinyllm.tasks import TaskModel


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{"vocab_size": 11, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16, **kw})).eval()


def test_forward_shape():
    model = tiny()
    assert model(torch.randint(11, (3, 7))).shape == (3, 7, 11)


def test_causality_later_tokens_never_change_earlier_logits():
    model = tiny()
    x = torch.randint(11, (2, 16))
    y = x.clone()
    y[:, 9:] = (y[:, 9:] + 1) % 11  # change every token from position 9 on
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :9], b[:, :9], rtol=0, atol=0)
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_output_layer_is_tied_to_token_embedding():
    model = tiny()
    assert model.lm_head.weight is model.transformer.wte.weight
    # counted once: embeddings + 2 blocks + final LayerNorm
    n_embd, V, T, L = 16, 11, 16, 2
    block = (
        2 * 2 * n_embd
        + (n_embd * 3 * n_embd + 3 * n_embd)
        + (n_embd * n_embd + n_embd)
        + (n_embd * 4 * n_embd + 4 * n_embd)
        + (4 * n_embd * n_embd + n_embd)
    )
    assert model.num_params() == V * n_embd + T * n_embd + L * block + 2 * n_embd
    assert model.num_params(non_embedding=True) == model.num_params() - V * n_embd - T * n_embd


def test_scaled_init_of_residual_projections():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=8, n_head=4, n_embd=128))
    proj = model.transformer.h[0].mlp.c_proj.weight
    fc = model.transformer.h[0].mlp.c_fc.weight
    assert abs(fc.std().item() - 0.02) < 0.002
    assert abs(proj.std().item() - 0.02 / 4) < 0.001  # 0.02 / sqrt(2 * 8)


def test_default_loss_is_cross_entropy_over_every_position():
    model = TaskModel(tiny())
    x = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    y = torch.tensor([[2, 3, 4, 5], [6, 7, 8, 9]])
    with torch.no_grad():
        logits = model(x)
        expected = F.cross_entropy(logits.reshape(-1, 11), y.reshape(-1))
        assert torch.equal(model.loss((x, y)), expected)
        # and by hand: mean of -log softmax at the target
        by_hand = -torch.log_softmax(logits, -1).gather(2, y[..., None]).mean()
        torch.testing.assert_close(model.loss((x, y)), by_hand)


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = TaskModel(GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=32)))
    x = torch.randint(11, (4, 16))
    y = torch.randint(11, (4, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model.loss((x, y)).item()
    for _ in range(150):
        loss = model.loss((x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 2.0
    assert loss.item() < 0.1


def test_sequence_longer_than_block_size_is_refused():
    with pytest.raises(ValueError, match="block_size"):
        tiny()(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"n_embd": 30, "n_head": 4}, "divisible"),
        ({"n_layer": 0}, "n_layer"),
        ({"vocab_size": -3}, "vocab_size"),
        ({"block_size": 2.5}, "block_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"bias": "yes"}, "bias"),
    ],
)
def test_invalid_configs_are_clear_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        GPTConfig(**kw)


def test_config_from_dict_refuses_unknown_keys():
    with pytest.raises(ConfigError, match="n_layers"):
        GPTConfig.from_dict({"n_layers": 3})
