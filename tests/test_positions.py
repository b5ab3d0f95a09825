"""Position schemes: the ids each gives on hand-written examples, the training offset, the KV cache,
and a tiny abacus model that learns to add (and is read through eval --lengths, sample and export)."""

import json
import subprocess
import sys

import pytest
import torch

import tinyllm
from tinyllm import GPT, GPTConfig
from tinyllm.errors import ConfigError, UsageError
from tinyllm.positions import abacus_positions, random_offsets

from .conftest import SHAKESPEARE_EXCERPT

PLUS, EQ = 10, 11


def tokens(text: str) -> torch.Tensor:
    return torch.tensor([["0123456789+=".index(c) for c in text]])


def test_abacus_ids_on_hand_written_examples():
    # a digit's id is its place in its number (1 = units); the answer shifted by one; the + after an
    # operand the place after its last digit; other non-digits 0
    ids, state = abacus_positions(tokens("321+540=8610"), EQ)
    assert ids.tolist() == [[1, 2, 3, 4, 1, 2, 3, 1, 2, 3, 4, 5]]
    assert state.run.tolist() == [4] and state.after_marker.tolist() == [True]
    ids, _ = abacus_positions(tokens("7+91=4"), EQ)
    assert ids.tolist() == [[1, 2, 1, 2, 1, 2]]
    # rows are independent; a chunk continuing from a state gives the same ids as the whole
    batch = torch.cat([tokens("12+34=64"), tokens("1+1=20++")])
    whole, _ = abacus_positions(batch, EQ)
    assert whole.tolist() == [[1, 2, 3, 1, 2, 1, 2, 3], [1, 2, 1, 1, 2, 3, 0, 0]]
    state, pieces = None, []
    for t in range(batch.shape[1]):
        ids, state = abacus_positions(batch[:, t : t + 1], EQ, state)
        pieces.append(ids)
    assert torch.equal(torch.cat(pieces, dim=1), whole)
    head, state = abacus_positions(batch[:, :5], EQ)
    tail, _ = abacus_positions(batch[:, 5:], EQ, state)
    assert torch.equal(torch.cat([head, tail], dim=1), whole)


def test_random_offset_moves_every_digit_together_and_stays_in_the_table():
    ids, _ = abacus_positions(tokens("4321+8765=21750").repeat(500, 1), EQ)
    torch.manual_seed(0)
    moved = random_offsets(ids, table_size=12)
    offset = moved - ids
    assert (moved[ids == 0] == 0).all()  # non-digits stay at 0
    per_row = offset[:, 0]
    assert torch.equal(offset[ids > 0].view(500, -1), per_row[:, None].expand(500, int((ids[0] > 0).sum())))
    assert moved.max() == 11 and per_row.min() == 0  # the whole range is used, never past the table
    assert set(per_row.tolist()) == set(range(12 - int(ids.max())))


def abacus_gpt(seed=0) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=12,
        block_size=20,
        n_layer=2,
        n_head=2,
        n_embd=16,
        positions="abacus",
        abacus_size=9,
        abacus_marker=EQ,
    )
    return GPT(config).eval()


def test_abacus_model_decodes_the_same_with_and_without_the_cache():
    model = abacus_gpt()
    prompt = torch.cat([tokens("4321+8765="), tokens("0007+1009=")])
    cached = model.generate(prompt, 5, temperature=0)
    uncached = model.generate(prompt, 5, temperature=0, use_cache=False)
    assert torch.equal(cached, uncached)
    # and the logits agree, step by step
    from tinyllm.kv_cache import KVCache

    cache = KVCache.for_model(model, 2)
    logits = [model(cached[:, :10], cache)[:, -1]]
    for t in range(10, 14):
        logits.append(model(cached[:, t : t + 1], cache)[:, -1])
    full = model(cached[:, :14])[:, 9:]
    torch.testing.assert_close(torch.stack(logits, dim=1), full, atol=1e-5, rtol=1e-5)


def test_abacus_embeddings_follow_the_digits_not_the_position_in_the_context():
    model = abacus_gpt()
    alone = model.position_embedding(tokens("321+540="))
    after_others = model.position_embedding(tokens("++++321+540="))[:, 4:]
    torch.testing.assert_close(alone, after_others)
    assert torch.equal(alone[0, 0], model.transformer.wpe.weight[1])  # the units digit: row 1
    learned = GPT(GPTConfig(vocab_size=12, block_size=20, n_layer=1, n_head=2, n_embd=16)).eval()
    assert not torch.equal(
        learned.position_embedding(tokens("321+540=")), learned.position_embedding(tokens("++++321+540="))[4:]
    )


def test_abacus_needs_a_marker_and_a_table_long_enough():
    with pytest.raises(ConfigError, match="answer marker"):
        GPTConfig(vocab_size=12, positions="abacus")
    with pytest.raises(ConfigError, match="positions must be"):
        GPTConfig(positions="rotary")
    model = abacus_gpt()
    with pytest.raises(ValueError, match="too long for the abacus table"):
        model(tokens("123456789+1="))


@pytest.fixture(scope="module")
def abacus_run(tmp_path_factory):
    """A tiny abacus model (Muon, the scheme's default) trained on 1-2 digit addition, about 25 s on
    2 cores. Its table of 6 places reads operands of up to 4 digits."""
    out = tmp_path_factory.mktemp("abacus") / "run"
    tinyllm.train(
        "addition",
        out_dir=out,
        task_options={"digits": 2},
        model_overrides={"positions": "abacus", "n_layer": 2, "n_head": 2, "n_embd": 48, "abacus_size": 6},
        train_overrides={"max_iters": 600, "max_time": None, "lr": 1e-2, "eval_interval": 300, "batch_size": 64},
        progress_bar=False,
        log=lambda *a: None,
    )
    return out


@pytest.mark.slow
def test_a_tiny_abacus_model_learns_two_digit_addition(abacus_run):
    run = tinyllm.load(abacus_run)
    assert run.model.config.positions == "abacus" and run.task.positions == "abacus"
    assert run.config["train"]["optimizer"] == "muon" and run.config["train"]["schedule"] == "wsd"
    accuracy = run.task.accuracy_by_length(run.task.wrap(run.model), [1, 2, 5], "cpu", problems=200)
    assert accuracy[1] >= 0.95 and accuracy[2] >= 0.95 and accuracy[5] is None, accuracy
    assert run.complete("47+85=", temperature=0) == "132"
    # the longest prompt its table places is read (the answer may be wrong: 2 digits were trained)
    answer = run.complete("9999+1=", temperature=0)
    assert len(answer) <= 5 and answer.isdigit()
    with pytest.raises(UsageError, match="more than 4 digits, the most this model can read"):
        run.complete("12345+1=")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """`tinyllm ARGS` in this process (no second torch import): exit status, stdout, stderr."""
    from tinyllm.cli import main

    try:
        code = main(list(args))
    except SystemExit as e:  # argparse refusing a flag
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_eval_lengths_reports_each_length_and_refusals(abacus_run, tmp_path, capsys):
    code, out, err = cli(capsys, "eval", str(abacus_run), "--lengths", "1-3,30", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["positions"] == "abacus" and result["trained_digits"] == 2 and result["longest"] == 4
    assert list(result["accuracy"]) == ["1", "2", "3", "30"] and result["accuracy"]["30"] == "refused"
    assert result["accuracy"]["1"] >= 0.95 and isinstance(result["accuracy"]["3"], float)
    assert (abacus_run / "accuracy_by_length.png").stat().st_size > 1000
    # a learned-position run refuses lengths past its training: reported, not an error
    learned = tmp_path / "learned"
    tinyllm.train(
        "addition",
        out_dir=learned,
        task_options={"digits": 2},
        model_overrides={"n_layer": 1, "n_head": 2, "n_embd": 16},
        train_overrides={"max_iters": 5, "max_time": None, "eval_interval": 5},
        progress_bar=False,
        log=lambda *a: None,
    )
    code, out, err = cli(capsys, "eval", str(learned), "--lengths", "1-4")
    assert code == 0, err
    lines = out.splitlines()
    assert any(line.split() == ["3", "refused"] for line in lines) and "learned positions" in lines[0]
    for bad in ("0-3", "a-b", "5-200"):
        code, out, err = cli(capsys, "eval", str(learned), "--lengths", bad)
        assert code == 2 and "--lengths" in err and "Traceback" not in err


def test_sample_and_export_with_abacus_positions(abacus_run, tmp_path, capsys):
    code, out, err = cli(capsys, "sample", str(abacus_run), "--prompt", "47+85=", "--temperature", "0")
    assert code == 0 and out.strip() == "132", out + err
    code, out, err = cli(capsys, "export", str(abacus_run), str(tmp_path / "hf"))
    assert code == 2 and "abacus positions cannot be exported" in err and not (tmp_path / "hf").exists()
    args = [
        "train",
        "shakespeare",
        "--positions",
        "abacus",
        "--out",
        str(tmp_path / "s"),
        "--data",
        SHAKESPEARE_EXCERPT,
    ]
    code, out, err = cli(capsys, *args)
    assert code == 2 and "addition" in err and "Traceback" not in err
    # the subprocess a user runs: a clear line, no traceback
    done = subprocess.run(
        [sys.executable, "-m", "tinyllm", "sample", str(abacus_run), "--prompt", "123456+1="],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "more than 4 digits" in done.stderr and "Traceback" not in done.stderr
