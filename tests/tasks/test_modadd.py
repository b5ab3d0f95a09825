"""The modadd task: its prompt round trip, its split of the 97 x 97 table and its answer-only loss."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyllm import GPTConfig
from tinyllm.tasks import IGNORE, get_task


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 96), st.integers(0, 96))
def test_modadd_round_trip(a, b):
    task = get_task("modadd")()
    ids = task.encode_prompt(f"{a}+{b}=")
    assert ids == [a, 97, b, 98]
    seq = task.encode(torch.tensor([[a, b]]))[0].tolist()
    assert seq[:4] == ids and task.decode_completion(f"{a}+{b}=", seq[4:]) == str((a + b) % 97)


def test_modadd_split_covers_every_pair_once():
    task = get_task("modadd")(train_fraction=0.3)
    task.prepare()
    train = {tuple(p) for p in task.pairs["train"].tolist()}
    test = {tuple(p) for p in task.pairs["test"].tolist()}
    assert not train & test and len(train | test) == 97 * 97
    assert len(train) == int(0.3 * 97 * 97)


def test_modadd_loss_is_the_answer_token_only():
    task = get_task("modadd")()
    task.prepare()
    torch.manual_seed(0)
    model = task.build_model(GPTConfig(vocab_size=99, block_size=4, n_layer=1, n_head=4, n_embd=32))
    x, y = task.get_batch("train", 32, 4, torch.Generator().manual_seed(0))
    assert (y[:, :3] == IGNORE).all() and torch.equal(y[:, 3], (x[:, 0] + x[:, 2]) % 97)
    logits = model.gpt(x)[:, -1]
    assert torch.allclose(model.loss((x, y)), torch.nn.functional.cross_entropy(logits, y[:, -1]))
