"""Our GPT is GPT-2: the same weights in Hugging Face's GPT2LMHeadModel give the same logits."""

import pytest
import torch

from tinyllm import GPT, GPTConfig

transformers = pytest.importorskip("transformers")

from tinyllm.hf import from_hf_gpt2, to_hf_gpt2  # noqa: E402


@pytest.mark.parametrize("bias", [True, False])
def test_same_weights_same_logits_as_hugging_face(bias):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=37, block_size=24, n_layer=2, n_head=4, n_embd=32, bias=bias)).eval()
    with torch.no_grad():  # make every weight matter (biases and LayerNorms start at 0 and 1)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf = to_hf_gpt2(model)
    x = torch.randint(37, (3, 24))
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(x).logits, rtol=0, atol=1e-5)
    back = from_hf_gpt2(hf)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)
