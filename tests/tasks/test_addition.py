import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyllm import GPTConfig
from tinyllm.errors import ConfigError, UsageError
from tinyllm.tasks import IGNORE, TaskModel, get_task
from tinyllm.tasks.addition_problems import (
    EDGE_CLASSES,
    draw_problems,
    edge_set,
    hash_pairs,
    held_out_problems,
    number_length,
    to_digits,
)


def addition(digits=3, loss="answer", positions="learned"):
    task = get_task("addition")(digits=digits, loss=loss, positions=positions)
    task.prepare()
    return task


def test_answer_only_loss_ignores_the_prompt():
    task = addition(3)
    prompt_len = 2 * 3 + 2
    config = GPTConfig(vocab_size=12, block_size=task.model_defaults["block_size"], n_layer=1, n_head=2, n_embd=16)
    torch.manual_seed(0)
    model = task.build_model(config)
    x, y = task.get_batch("train", 8, config.block_size, torch.Generator().manual_seed(0))
    prompt_targets = slice(0, prompt_len - 1)  # targets at prompt positions
    assert (y[:, prompt_targets] == IGNORE).all() and (y[:, prompt_len - 1 :] >= 0).all()
    # --loss full: the same problems, every target scored
    x_full, y_full = addition(3, loss="full").get_batch("train", 8, config.block_size, torch.Generator().manual_seed(0))
    assert torch.equal(x_full, x) and (y_full >= 0).all()
    assert torch.equal(y_full[:, prompt_len - 1 :], y[:, prompt_len - 1 :])

    def loss_and_grads(model, targets):
        model.zero_grad()
        loss = model.loss((x, targets))
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    # the answer-only loss equals the cross-entropy of the answer positions alone
    logits = model.gpt(x)[:, prompt_len - 1 :]
    by_hand = torch.nn.functional.cross_entropy(logits.reshape(-1, 12), y[:, prompt_len - 1 :].reshape(-1))
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


def test_abacus_batches_hold_problems_of_different_lengths():
    task = addition(10, positions="abacus")
    a, b = torch.tensor([123, 5, 99999]), torch.tensor([45, 7, 1])
    lengths = torch.maximum(number_length(a), number_length(b))
    seq, answer = task.layout.sequences(to_digits(a, 5), to_digits(b, 5), lengths)
    text = ["".join(task.tokenizer.decode(row)) for row in seq.tolist()]
    # backwards, the shorter operand padded to the longer's length, L + 1 answer digits, then padding
    assert text == ["321+540=8610" + "+" * 6, "5+7=21" + "+" * 12, "99999+10000=000001"]
    x, y = task.get_batch("train", 64, 92, torch.Generator().manual_seed(0))
    scored = y != IGNORE
    # exactly L + 1 scored targets per row, all digits, right after the '='
    for row in range(64):
        where = scored[row].nonzero().squeeze(1)
        L = (where.numel()) - 1
        assert x[row, where[0]] == 11 and (y[row, where] < 10).all()
        assert where.tolist() == list(range(2 * L + 1, 3 * L + 2))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**10 - 1), st.integers(0, 10**10 - 1), st.sampled_from(["learned", "abacus"]))
def test_encoding_round_trips(a, b, positions):
    task = get_task("addition")(digits=10, positions=positions)
    ids = task.encode_prompt(f"{a}+{b}=")
    text = task.tokenizer.decode(ids)
    if positions == "learned":
        assert text == f"{a:010d}+{b:010d}="
    else:
        width = max(len(str(a)), len(str(b)))
        assert text == f"{a:0{width}d}"[::-1] + "+" + f"{b:0{width}d}"[::-1] + "="
    # the training sequence carries the sum reversed; decoding it gives the plain answer
    lengths = torch.maximum(number_length(torch.tensor([a])), number_length(torch.tensor([b])))
    seq, answer = task.layout.sequences(to_digits(torch.tensor([a]), 10), to_digits(torch.tensor([b]), 10), lengths)
    seq = seq[0][answer[0] | (torch.arange(seq.shape[1]) < len(ids))].tolist()
    assert seq[: len(ids)] == ids
    assert len(seq) - len(ids) == task.max_new_tokens(f"{a}+{b}=")
    assert task.decode_completion(f"{a}+{b}=", seq[len(ids) :]) == str(a + b)


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
    # the edge problems are not in the random test set: it stays a test of random problems
    edges = {(a, b) for _, a, b in big.edges}
    assert not edges & set(zip(big.test_a.tolist(), big.test_b.tolist(), strict=True))
    # the same set on every call (a seed of its own), and one that leaves out what it is told to
    assert torch.equal(addition(10).test_a, big.test_a) and torch.equal(addition(10).test_b, big.test_b)
    excluded = hash_pairs(big.test_a[:500], big.test_b[:500])
    a, b = held_out_problems(2000, 10, excluded, seed=1)
    assert len(set(zip(a.tolist(), b.tolist(), strict=True))) == 2000
    assert not torch.isin(hash_pairs(a, b), excluded).any()


def edge_class_of(a: int, b: int) -> set[str]:
    """Which edge classes the problem a + b belongs to, by their definitions in addition_problems."""
    sa, sb = str(a), str(b)
    classes = set()
    if set(sa) == {"9"} and set(sb) == {"9"}:
        classes.add("nines")
    if (set(sa) == {"9"} and b == 1) or (set(sb) == {"9"} and a == 1):
        classes.add("nines+1")
    if 0 in (a, b):
        classes.add("zero")
    if min(len(sa), len(sb)) <= 2 and max(len(sa), len(sb)) >= 3:
        classes.add("lengths")
    width = max(len(sa), len(sb))
    carry, carries = 0, []
    for x, y in zip(sa.zfill(width)[::-1], sb.zfill(width)[::-1], strict=True):
        carry = (int(x) + int(y) + carry) // 10
        carries.append(carry)
    if all(carries):
        classes.add("carry")  # every column carries, into a new leading digit
    if all(int(x) + int(y) <= 9 for x, y in zip(sa.zfill(width), sb.zfill(width), strict=True)):
        classes.add("no-carry")
    return classes


def test_training_draws_every_edge_class():
    a, b = draw_problems(20_000, 10, torch.Generator().manual_seed(0))
    counts = {kind: 0 for kind in EDGE_CLASSES}
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        for kind in edge_class_of(x, y):
            counts[kind] += 1
    assert all(count >= 500 for count in counts.values()), counts  # each class is a few percent of problems
    assert (a == 10**10 - 1).any() and ((a == 10**10 - 1) & (b == 10**10 - 1)).any()  # the failure
    lengths = number_length(a)
    assert (torch.bincount(lengths, minlength=11)[1:] > 500).all()  # every operand length is common


def test_edge_set_is_deterministic_and_covers_each_length():
    edges = edge_set(10)
    assert edges == edge_set(10) and len(edges) == len({(a, b) for _, a, b in edges})
    assert ("nines", 9999999999, 9999999999) in edges and ("nines+1", 1, 99999) in edges
    for kind, a, b in edges:
        assert kind in edge_class_of(a, b), (kind, a, b)
        assert max(a, b) < 10**10
    for length in range(1, 11):
        kinds = {kind for kind, a, b in edges if max(len(str(a)), len(str(b))) == length}
        assert kinds >= {"nines", "nines+1", "zero", "carry"}
        if length >= 3:
            assert kinds == set(EDGE_CLASSES)


@pytest.mark.parametrize("prompt", ["12+", "a+b=", "1+2", "", "1+2=3", "12345678901+1="])
def test_malformed_prompts(prompt):
    task = get_task("addition")(digits=10)
    with pytest.raises(UsageError):
        task.encode_prompt(prompt)


def test_abacus_prompts_reach_thirty_digits():
    task = get_task("addition")(digits=10, positions="abacus")
    long = "9" * 30
    assert len(task.encode_prompt(f"{long}+1=")) == 62 and task.max_new_tokens(f"{long}+1=") == 31
    with pytest.raises(UsageError, match="more than 30 digits, the most this model can read"):
        task.encode_prompt("1" * 31 + "+1=")
    with pytest.raises(UsageError, match="more than 10 digits, the most this model was trained on"):
        get_task("addition")(digits=10).encode_prompt("1" * 11 + "+1=")


def test_bad_options():
    with pytest.raises(UsageError):
        get_task("addition")(digits=0)
    with pytest.raises(UsageError):
        get_task("addition")(loss="half")
    task = addition(3, positions="abacus")
    with pytest.raises(ConfigError, match="abacus_size >= 5"):
        task.check_config(GPTConfig(vocab_size=12, block_size=92, positions="abacus", abacus_size=4, abacus_marker=11))
    with pytest.raises(ConfigError, match="learned"):
        task.check_config(GPTConfig(vocab_size=12, block_size=92))


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
    assert task.correct(run.model, a, b, "cpu").all()
    x, y = pairs[0]
    assert run.complete(f"{x}+{y}=", temperature=0) == str(x + y)  # through the user-facing API
