import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyllm import GPTConfig
from tinyllm.errors import UsageError
from tinyllm.tasks import IGNORE, TaskModel, get_task


def addition(digits=3, loss="answer"):
    task = get_task("addition")(digits=digits, loss=loss)
    task.prepare()
    return task


def test_answer_only_loss_ignores_the_prompt():
    task = addition(3)
    config = GPTConfig(vocab_size=12, block_size=task.model_defaults["block_size"], n_layer=1, n_head=2, n_embd=16)
    torch.manual_seed(0)
    model = task.build_model(config)
    x, y = task.get_batch("train", 8, config.block_size, torch.Generator().manual_seed(0))
    prompt_targets = slice(0, task.prompt_len - 1)  # targets at prompt positions
    assert (y[:, prompt_targets] == IGNORE).all() and (y[:, task.prompt_len - 1 :] >= 0).all()
    # --loss full: the same problems, every target scored
    x_full, y_full = addition(3, loss="full").get_batch("train", 8, config.block_size, torch.Generator().manual_seed(0))
    assert torch.equal(x_full, x) and (y_full >= 0).all()
    assert torch.equal(y_full[:, task.prompt_len - 1 :], y[:, task.prompt_len - 1 :])

    def loss_and_grads(model, targets):
        model.zero_grad()
        loss = model.loss((x, targets))
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    # the answer-only loss equals the cross-entropy of the answer positions alone
    logits = model.gpt(x)[:, task.prompt_len - 1 :]
    by_hand = torch.nn.functional.cross_entropy(logits.reshape(-1, 12), y[:, task.prompt_len - 1 :].reshape(-1))
    torch.testing.assert_close(model.loss((x, y)), by_hand)
    # changing an answer target changes it
    y3 = y.clone()
    y3[:, -1] = (y3[:, -1] + 1) % 10
    assert not torch.equal(loss_and_grads(model, y3)[0], loss_and_grads(model, y)[0])
    # the full loss scores the prompt too: changing a prompt target changes it
    y_other_prompt = y_full.clone()
    y_other_prompt[:, prompt_targets] = (y_other_prompt[:, prompt_targets] + 3) % 12
    full = addition(3, loss="full").build_model(config)
    full.load_state_dict(model.state_dict())
    assert type(full) is TaskModel
    assert not torch.equal(loss_and_grads(full, y_full)[0], loss_and_grads(full, y_other_prompt)[0])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**10 - 1), st.integers(0, 10**10 - 1))
def test_encoding_round_trips(a, b):
    task = get_task("addition")(digits=10)
    ids = task.encode_prompt(f"{a}+{b}=")
    assert len(ids) == task.prompt_len
    assert task.tokenizer.decode(ids) == f"{a:010d}+{b:010d}="
    # the training sequence carries the sum reversed; decoding it gives the plain answer
    seq = task.encode(torch.tensor([a]), torch.tensor([b]))[0].tolist()
    assert seq[: task.prompt_len] == ids
    assert task.decode_completion(f"{a}+{b}=", seq[task.prompt_len :]) == str(a + b)


def test_test_problems_never_appear_in_training():
    task = addition(2)
    test = set(zip(task.test_a.tolist(), task.test_b.tolist(), strict=True))
    assert len(test) == len(task.test_a) == 1000  # a tenth of the 10,000 two-digit problems, distinct
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        a, b = task.draw_training_problems(1000, gen)
        assert not test & set(zip(a.tolist(), b.tolist(), strict=True))
    big = addition(10)
    assert len(big.test_a) == 10_000
    # another seed (the training stream) does produce test-like problems before filtering
    a, b = big.draw_problems(5000, torch.Generator().manual_seed(0))
    assert (a.max() >= 10**9) and (a == 10**10 - 1).any()  # long operands and 99..9 carry chains


def test_operand_lengths_are_spread():
    task = addition(10)
    a, b = task.draw_problems(20000, torch.Generator().manual_seed(0))
    lengths = task.operand_length(a, torch.zeros_like(a))
    counts = torch.bincount(lengths, minlength=11)[1:]
    assert (counts > 1000).all()  # every length 1..10 is common


@pytest.mark.parametrize("prompt", ["12+", "a+b=", "1+2", "", "1+2=3", "12345678901+1="])
def test_malformed_prompts(prompt):
    task = get_task("addition")(digits=10)
    with pytest.raises(UsageError):
        task.encode_prompt(prompt)


def test_bad_options():
    with pytest.raises(UsageError):
        get_task("addition")(digits=0)
    with pytest.raises(UsageError):
        get_task("addition")(loss="half")


def test_short_run_learns_one_digit_addition(tmp_path):
    import tinyllm
    from tinyllm.runs import train

    result = train(
        "addition",
        out_dir=tmp_path / "add1",
        task_options={"digits": 1},
        model_overrides={"n_layer": 1, "n_head": 2, "n_embd": 32},
        train_overrides={
            "max_iters": 400,
            "max_time": None,
            "batch_size": 64,
            "lr": 1e-2,
            "eval_interval": 100,
            "warmup_iters": 20,
        },
        progress_bar=False,
        log=lambda *a: None,
    )
    assert result.iters == 400
    run = tinyllm.load(tmp_path / "add1")
    task = run.task
    task.prepare()
    # 1-digit addition has only 100 problems and 10 are held out for testing (never trained on):
    # the model must get every one of the other 90 right
    held_out = set(zip(task.test_a.tolist(), task.test_b.tolist(), strict=True))
    assert len(held_out) == 10
    pairs = [(a, b) for a in range(10) for b in range(10) if (a, b) not in held_out]
    a, b = torch.tensor(pairs).T
    assert torch.equal(task.answers(run.model, a, b, "cpu"), a + b)
    x, y = pairs[0]
    assert run.complete(f"{x}+{y}=", temperature=0) == str(x + y)  # through the user-facing API
