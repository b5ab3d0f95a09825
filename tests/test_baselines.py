"""Counting baselines (baselines.py): the counts by hand, Kneser-Ney's distributions, the run folder's
cache, and `tinyllm eval`, the API and the plot that show them."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

import tinyllm
from tinyllm import baselines as bl
from tinyllm.cli import main

from .conftest import SHAKESPEARE_EXCERPT


def test_uniform_unigram_and_bigram_by_hand():
    train, test = np.array([0, 1, 0, 1, 2]), np.array([0, 1, 2])
    result = bl.counting_baselines(train, test, vocab=3)
    assert result["uniform"] == pytest.approx(math.log(3))
    # unigram: counts 2, 2, 1 of 5 tokens, add-one over 3 tokens: (c + 1) / 8
    assert result["unigram"] == pytest.approx(-np.mean(np.log([3 / 8, 3 / 8, 2 / 8])))
    # bigram: (0,1) twice, (1,2) once; count(0, .) = count(1, .) = 2; the first test token by its unigram
    assert result["bigram"] == pytest.approx(-np.mean(np.log([3 / 8, 3 / 5, 2 / 5])))


@pytest.mark.parametrize("order", [3, 4, 6])
def test_kneser_ney_gives_a_distribution_after_any_context(order):
    rng = np.random.default_rng(order)
    train = rng.integers(0, 5, 400) % np.array([5, 3]).repeat(200)  # two halves with different statistics
    for context in (train[10 : 10 + order - 1], np.array([4] * (order - 1)), rng.integers(0, 5, order - 1)):
        probs = [bl.kneser_ney(train, np.append(context, w), 5, order)[-1] for w in range(5)]
        assert sum(probs) == pytest.approx(1.0) and min(probs) > 0  # never 0: unseen tokens keep some mass


def test_the_ladder_on_real_text():
    text = Path(SHAKESPEARE_EXCERPT).read_text(encoding="utf-8")
    chars = sorted(set(text))
    tokens = np.array([chars.index(c) for c in text])
    split = int(0.9 * len(tokens))
    result = bl.counting_baselines(tokens[:split], tokens[split:], len(chars))
    rungs = ["uniform", "unigram", "bigram", "kneser_ney_3", "kneser_ney_4"]
    assert [result[r] for r in rungs] == sorted((result[r] for r in rungs), reverse=True)  # each counts more


def test_the_run_folder_keeps_them_and_notices_a_change(tmp_path, monkeypatch):
    train, test = np.array([0, 1, 2, 0, 1, 2, 0]), np.array([0, 1, 2])
    first = bl.counted_baselines(tmp_path, train, test, 3)
    kept = json.loads((tmp_path / "baselines.json").read_text())
    assert kept["baselines"] == first and kept["train_tokens"] == 7 and kept["discount"] == 0.75
    monkeypatch.setattr(bl, "counting_baselines", lambda *a: pytest.fail("counted again"))
    assert bl.counted_baselines(tmp_path, train, test, 3) == first  # read back, not counted
    monkeypatch.undo()
    other = bl.counted_baselines(tmp_path, train[:-1], test, 3)  # another split: counted again
    assert other != first and json.loads((tmp_path / "baselines.json").read_text())["train_tokens"] == 6


def test_eval_reports_them_and_when_the_model_passed_each(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns(".lock", "baselines.json"))
    assert main(["eval", str(run), "--json", "--batches", "2", "--data", SHAKESPEARE_EXCERPT]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["baselines"]) == list(bl.NAMES) and all(
        isinstance(v, float) for v in result["baselines"].values()
    )
    loaded = tinyllm.load(run)
    loaded.task.prepare(SHAKESPEARE_EXCERPT, tokenizer=loaded.tokenizer)
    for name, loss in result["baselines"].items():
        assert result["baselines_bits_per_char"][name] == pytest.approx(loaded.task.loss_in_bits_per_char(loss))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first_eval = next(r for r in records if "test_loss" in r)
    uniform = result["baselines_passed_at"]["uniform"]
    assert uniform == {"step": first_eval["iter"], "seconds": first_eval["elapsed_s"]}  # below ln(V) at once
    assert main(["eval", str(run), "--batches", "2", "--data", SHAKESPEARE_EXCERPT]) == 0
    out = capsys.readouterr().out
    assert "counting baselines" in out and "kneser_ney_6" in out and "nats/token" in out


def test_a_task_that_is_not_text_says_so_in_one_line(tmp_path, capsys):
    train = {"max_iters": 2, "max_time": None, "eval_interval": 1, "eval_iters": 1, "batch_size": 4}
    tinyllm.train("sort", out_dir=tmp_path / "s", task_options={"length": 3}, train_overrides=train, progress_bar=False)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "s"), "--batches", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "baselines" in line]
    assert lines == ["         baselines: sort is not a text task: no counting baselines"]


def test_the_api_and_the_plot_read_the_kept_figures(tiny_run, tmp_path, monkeypatch):
    import shutil

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from fastapi.testclient import TestClient

    from tinyllm.plots import _draw_baselines
    from tinyllm.web.app import create_app

    run = tmp_path / "runs" / "shakespeare"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns(".lock", "baselines.json"))
    counted = tinyllm.inference.run_baselines(tinyllm.load(run), data_path=SHAKESPEARE_EXCERPT)["baselines"]
    # the server cannot be told where the excerpt is: with no corpus to check against, it gives the kept figures
    monkeypatch.setenv("TINYLLM_DATA_DIR", str(tmp_path / "no-corpus"))
    body = TestClient(create_app(run.parent)).get("/api/runs/shakespeare/baselines").json()
    assert body["baselines"] == counted and set(body["passed_at"]) == set(bl.NAMES)
    assert body["note"].startswith("as counted before")
    fig, ax = plt.subplots()
    _draw_baselines(ax, run)
    assert sorted(line.get_ydata()[0] for line in ax.lines) == sorted(counted.values())
    plt.close(fig)


def test_a_test_token_never_seen_in_training_by_hand():
    train, test = np.array([0, 1, 0, 1, 2]), np.array([0, 3])  # token 3 occurs only in the test split
    result = bl.counting_baselines(train, test, vocab=4)
    # add-one: unigram (c + 1) / (5 + 4); bigram (0, 3) never seen: (0 + 1) / (count(0, .) + 4) = 1 / 6
    assert result["unigram"] == pytest.approx(-np.mean(np.log([3 / 9, 1 / 9])))
    assert result["bigram"] == pytest.approx(-np.mean(np.log([3 / 9, 1 / 6])))
    # Kneser-Ney's unigram: continuation counts (distinct left neighbours) 1, 1, 1, 0 of 3, discounted by
    # 0.75 and interpolated with the uniform: (max(c - 0.75, 0) + 0.75 x 3 / 4) / 3
    seen, unseen = (1 - 0.75 + 0.75 * 3 / 4) / 3, (0.75 * 3 / 4) / 3
    assert bl.kneser_ney(train, np.array([0]), 4, 3)[0] == pytest.approx(seen)
    assert bl.kneser_ney(train, np.array([3]), 4, 3)[0] == pytest.approx(unseen)
    assert 3 * seen + unseen == pytest.approx(1.0)
    # after 0, a history seen twice (always followed by 1): 3 is left the back-off mass x its unigram share
    after_zero = bl.kneser_ney(train, np.array([0, 3]), 4, 2)[1]
    assert after_zero == pytest.approx(0.75 * 1 / 2 * unseen)  # D x N1+(0 .) / c(0 .) x P1(3)
