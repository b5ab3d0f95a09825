"""The sort task: its prompt round trip, its output-only loss and its held-out lists."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyllm import GPTConfig
from tinyllm.tasks import IGNORE, get_task


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=10, max_size=10))
def test_sort_round_trip(digits):
    task = get_task("sort")(length=10)
    text = "".join(map(str, digits))
    ids = task.encode_prompt(text + "=")
    assert ids == digits + [10]
    seq = task.encode(torch.tensor([digits]))[0].tolist()
    assert seq[:11] == ids
    assert task.decode_completion(text + "=", seq[11:]) == "".join(sorted(text))


def test_sort_scores_only_the_output_and_holds_out_its_test_lists():
    task = get_task("sort")(length=6)
    task.prepare()
    config = GPTConfig(vocab_size=11, block_size=12, n_layer=1, n_head=2, n_embd=16)
    torch.manual_seed(0)
    model = task.build_model(config)
    x, y = task.get_batch("train", 16, 12, torch.Generator().manual_seed(0))
    assert (y[:, :6] == IGNORE).all() and (y[:, 6:] >= 0).all()  # the prompt's targets are not scored
    assert torch.equal(y[:, 6:], x[:, :6].sort(dim=1).values)  # the scored targets: the sorted list
    logits = model.gpt(x)[:, 6:]
    by_hand = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), y[:, 6:].reshape(-1))
    torch.testing.assert_close(model.loss((x, y)), by_hand)
    test = {tuple(r) for r in task.test_lists.tolist()}
    assert len(test) == len(task.test_lists) == 10_000
    train = task.draw_training_lists(20_000, torch.Generator().manual_seed(1))
    assert not test & {tuple(r) for r in train.tolist()}
