"""The sort and modadd tasks: same task API, their own losses and metrics."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyllm import GPTConfig
from tinyllm.tasks import IGNORE, TASKS, get_task


def test_all_tasks_are_listed_with_a_description():
    assert set(TASKS) >= {"shakespeare", "addition", "sort", "modadd"}
    assert all(task.description for task in TASKS.values())


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
