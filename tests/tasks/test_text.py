"""Your own text: the text task, the BPE tokenizer, and runs leaving and entering Hugging Face."""

import json
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyllm
from tinyllm.bpe import train_bpe
from tinyllm.cli import main
from tinyllm.tasks import get_task
from tinyllm.tasks.text import read_corpus
from tinyllm.tokenizer import CharTokenizer

from ..conftest import SHAKESPEARE_EXCERPT

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}
TRAIN = {"batch_size": 8, "max_iters": 16, "max_time": None, "eval_interval": 8, "eval_iters": 2, "warmup_iters": 2}
UNICODE = "Héllo wörld, 日本語 and emoji 🙂 — «quotes» ñ\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folder of two .txt files (and a file that is not .txt, which is skipped)."""
    folder = tmp_path_factory.mktemp("corpus")
    text = Path(SHAKESPEARE_EXCERPT).read_text(encoding="utf-8")
    (folder / "b.txt").write_text(text, encoding="utf-8")
    (folder / "a.txt").write_text(UNICODE * 50, encoding="utf-8")
    (folder / "notes.md").write_text("not read", encoding="utf-8")
    return folder


def train_text(corpus, out, **task_options):
    return tinyllm.train(
        "text",
        out_dir=out,
        data_path=str(corpus),
        task_options=task_options,
        model_overrides=TINY,
        train_overrides=TRAIN,
        progress_bar=False,
        log=lambda *a: None,
    )


@pytest.fixture(scope="module")
def char_run(corpus, tmp_path_factory):
    return train_text(corpus, tmp_path_factory.mktemp("runs") / "char").run_dir


@pytest.fixture(scope="module")
def bpe_run(corpus, tmp_path_factory):
    return train_text(corpus, tmp_path_factory.mktemp("runs") / "bpe", tokenizer="bpe", vocab_size=300).run_dir


def test_a_folder_is_its_txt_files_in_order_joined_by_a_blank_line(corpus):
    text = read_corpus(corpus)
    assert text == (corpus / "a.txt").read_text() + "\n\n" + (corpus / "b.txt").read_text()
    assert "not read" not in text


def test_the_text_keeps_its_case_and_any_unicode(char_run):
    run = tinyllm.load(char_run)
    vocab = set(run.tokenizer.chars)
    assert {"H", "日", "🙂", "ñ"} <= vocab  # cased, CJK, emoji
    ids = run.tokenizer.encode(UNICODE)
    assert isinstance(ids, list) and all(isinstance(i, int) for i in ids)
    assert run.tokenizer.decode(ids) == UNICODE
    assert isinstance(run.complete("Hé", max_new_tokens=5, seed=0), str)


def test_lowercase_flag_folds_the_text(corpus, tmp_path):
    run = tinyllm.load(train_text(corpus, tmp_path / "lower", lowercase=True).run_dir)
    assert "H" not in run.tokenizer.chars and "h" in run.tokenizer.chars


def test_bpe_run_has_a_hugging_face_tokenizer_file(bpe_run):
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(bpe_run / "tokenizer.json"))
    assert hf.get_vocab_size() == 300
    run = tinyllm.load(bpe_run)
    assert run.tokenizer.vocab_size == 300 and run.model.config.vocab_size == 300
    ids = run.tokenizer.encode(UNICODE)
    assert ids == hf.encode(UNICODE).ids and run.tokenizer.decode(ids) == UNICODE
    record = [json.loads(line) for line in (bpe_run / "metrics.jsonl").read_text().splitlines()][-1]
    assert record["test_bits_per_char"] < record["test_loss"] / 0.693  # a token carries more than a character


def test_bpe_is_trained_on_the_training_split_only(tmp_path):
    filler = "the cat sat on the mat and the dog ran to the log. " * 200
    rare = "zyxwvutsrq "
    for where, expect_token in (("train", True), ("test", False)):
        text = (rare * 100 + filler) if where == "train" else (filler + rare * 100)
        (tmp_path / f"{where}.txt").write_text(text)
        task = get_task("text")(tokenizer="bpe", vocab_size=400)
        task.prepare(str(tmp_path / f"{where}.txt"))
        vocab = task.tokenizer.tokenizer.get_vocab()
        assert any("zyxwvutsrq" in token for token in vocab) == expect_token, where


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=0, max_size=60))
def test_any_unicode_round_trips_through_both_tokenizers(text):
    bpe = _tiny_bpe()
    assert bpe.decode(bpe.encode(text)) == text
    chars = CharTokenizer.from_text(text + "a")
    assert chars.decode(chars.encode(text)) == text


_BPE = []


def _tiny_bpe():
    if not _BPE:
        _BPE.append(train_bpe([UNICODE * 20, "hello world " * 50], 300, progress=False, log=lambda *a: None))
    return _BPE[0]


def test_bpe_run_resumes_exactly(corpus, tmp_path, monkeypatch):
    from tinyllm.runs import Interrupted
    from tinyllm.training import Trainer

    straight = train_text(corpus, tmp_path / "straight", tokenizer="bpe", vocab_size=300)
    original_step = Trainer.step

    def step_then_stop_at_8(trainer):  # as Ctrl-C after step 8 would
        record = original_step(trainer)
        trainer.interrupted = trainer.iter == 8
        return record

    monkeypatch.setattr(Trainer, "step", step_then_stop_at_8)
    with pytest.raises(Interrupted):
        train_text(corpus, tmp_path / "resumed", tokenizer="bpe", vocab_size=300)
    monkeypatch.setattr(Trainer, "step", original_step)
    tinyllm.train(
        "text",
        out_dir=tmp_path / "resumed",
        resume=True,
        progress_bar=False,
        log=lambda *a: None,
    )  # the data path is saved in the run: --data is not needed again

    def losses(run):
        return [json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert losses(tmp_path / "resumed") == losses(straight.run_dir)
    resumed = tinyllm.load(tmp_path / "resumed")
    assert resumed.complete("Once", max_new_tokens=8, seed=1) == tinyllm.load(straight.run_dir).complete(
        "Once", max_new_tokens=8, seed=1
    )
    assert (tmp_path / "resumed" / "tokenizer.json").read_text() == (straight.run_dir / "tokenizer.json").read_text()


BAD = [
    (["train", "text", "--data", "{empty}"], 1, "empty"),
    (["train", "text", "--data", "{emptydir}"], 1, "no .txt files"),
    (["train", "text", "--data", "{binary}"], 1, "looks binary"),
    (["train", "text", "--data", "{latin1}"], 1, "byte 3"),
    (["train", "text", "--data", "{short}"], 2, "too long for this data"),
    (["train", "text"], 2, "--data"),
    (["train", "text", "--data", "{corpus}", "--tokenizer", "bpe", "--vocab-size", "100"], 2, "--vocab-size"),
    (["train", "text", "--data", "{corpus}", "--tokenizer", "bpe", "--vocab-size", "10000000"], 2, "--vocab-size"),
    (["train", "text", "--data", "{corpus}", "--vocab-size", "500"], 2, "--tokenizer bpe"),
    (["train", "text", "--data", "{corpus}", "--tokenizer", "words"], 2, "--tokenizer"),
    (["train", "text", "--data", "{corpus}", "--test-fraction", "1.5"], 2, "--test-fraction"),
    (["train", "text", "--data", "{greek}", "--init", "{char_run}"], 1, "does not fit"),
    (["train", "text", "--data", "{corpus}", "--init", "{char_run}", "--n-layer", "3"], 2, "n_layer"),
    (["train", "text", "--data", "{corpus}", "--init", "{nothing}"], 1, "config.json"),
    (["train", "addition", "--init", "{char_run}"], 2, "--init"),
    (["export", "{char_run}", "{nonempty}"], 2, "--overwrite"),
    (["export", "{addition_run}", "{out}"], 2, "cannot be exported"),
    (["import", "{nothing}", "{out}"], 1, "no config.json"),
    (["import", "{pickled}", "{out}"], 1, "pickle"),
    (["import", "{llama}", "{out}"], 2, "GPT-2"),
]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, corpus, char_run):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.txt").write_text("")
    (d / "emptydir").mkdir()
    (d / "binary.txt").write_bytes(b"abc\x00def" * 10)
    (d / "latin1.txt").write_bytes("café olé".encode("latin-1"))
    (d / "short.txt").write_text("just a few words\n")
    (d / "greek.txt").write_text("αβγδε " * 200)
    (d / "nonempty").mkdir()
    (d / "nonempty" / "keep.txt").write_text("mine")
    (d / "nothing").mkdir()
    for name, config in (("pickled", {"model_type": "gpt2"}), ("llama", {"model_type": "llama"})):
        (d / name).mkdir()
        (d / name / "config.json").write_text(json.dumps(config))
    (d / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    addition = tinyllm.train(
        "addition",
        out_dir=d / "addition",
        task_options={"digits": 2},
        model_overrides={"n_layer": 1, "n_head": 2, "n_embd": 16},
        train_overrides={"max_iters": 2, "max_time": None, "eval_interval": 2, "eval_iters": 1},
        progress_bar=False,
        log=lambda *a: None,
    )
    names = ["empty", "binary", "latin1", "short", "greek"]
    paths = {n: str(d / f"{n}.txt") for n in names}
    paths.update({n: str(d / n) for n in ("emptydir", "nonempty", "nothing", "pickled", "llama")})
    return {
        **paths,
        "corpus": str(corpus),
        "char_run": str(char_run),
        "addition_run": str(addition.run_dir),
        "out": str(d / "out"),
    }


@pytest.mark.parametrize("args, code, message", BAD, ids=[" ".join(a)[:50] for a, _, _ in BAD])
def test_bad_input_is_one_clear_line(args, code, message, bad_inputs, capsys, tmp_path):
    args = [a.format(**bad_inputs) for a in args]
    if args[0] == "train":
        args += ["--out", str(tmp_path / "run"), "--max-iters", "2", "--no-progress"]
    try:
        status = main(args)
    except SystemExit as e:  # argparse's own refusals
        status = e.code
    assert status == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err and message in err[-1] and err[-1].startswith("tinyllm: error:"), err
    assert (Path(bad_inputs["nonempty"]) / "keep.txt").read_text() == "mine"  # nothing lost


# ---- Hugging Face: export and import ----

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_export_loads_in_transformers_with_the_same_logits_text_and_tokens(kind, char_run, bpe_run, tmp_path):
    run_dir = {"char": char_run, "bpe": bpe_run}[kind]
    out = tmp_path / "hf"
    assert main(["export", str(run_dir), str(out)]) == 0
    run = tinyllm.load(run_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    text = "First Citizen: Héllo 日本 🙂"[: run.model.config.block_size]
    ids = tokenizer(text)["input_ids"]
    assert ids == run.tokenizer.encode(text)  # no special tokens added
    assert tokenizer.decode(ids) == text
    with torch.no_grad():
        torch.testing.assert_close(model(torch.tensor([ids])).logits, run.model(torch.tensor([ids])), rtol=0, atol=1e-5)
    generate = transformers.pipeline("text-generation", model=str(out), tokenizer=str(out))
    prompt, new = "Once upon", 12
    theirs = generate(prompt, max_new_tokens=new, do_sample=False)[0]["generated_text"]
    assert theirs == prompt + run.complete(prompt, max_new_tokens=new, temperature=0)


def test_export_then_import_gives_identical_weights_and_samples(bpe_run, tmp_path):
    assert main(["export", str(bpe_run), str(tmp_path / "hf"), "--checkpoint", "best"]) == 0
    assert main(["import", str(tmp_path / "hf"), str(tmp_path / "imported")]) == 0
    original, imported = tinyllm.load(bpe_run, checkpoint="best"), tinyllm.load(tmp_path / "imported")
    for (name, a), (_, b) in zip(original.model.state_dict().items(), imported.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert imported.task.name == "text"
    assert imported.complete("Once", max_new_tokens=10, seed=3) == original.complete("Once", max_new_tokens=10, seed=3)
    # and it fine-tunes: --init takes its weights and tokenizer
    corpus = json.loads((bpe_run / "config.json").read_text())["task_options"]["data"]
    code = main(
        [
            "train",
            "text",
            "--data",
            corpus,
            "--init",
            str(tmp_path / "imported"),
            "--out",
            str(tmp_path / "tuned"),
            "--max-iters",
            "2",
            "--eval-interval",
            "2",
            "--eval-iters",
            "1",
            "--batch-size",
            "2",
            "--no-progress",
        ]
    )
    assert code == 0
    tuned = tinyllm.load(tmp_path / "tuned")
    assert tuned.tokenizer.encode(UNICODE) == original.tokenizer.encode(UNICODE)  # the same tokenizer


def test_an_exported_character_tokenizer_keeps_the_runs_lowercasing(corpus, tmp_path):
    run_dir = train_text(corpus, tmp_path / "lower", lowercase=True).run_dir
    assert main(["export", str(run_dir), str(tmp_path / "hf")]) == 0
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert tokenizer("HELLO There")["input_ids"] == tinyllm.load(run_dir).tokenizer.encode("hello there")


def test_export_without_transformers_says_how_to_get_it(char_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    assert main(["export", str(char_run), str(tmp_path / "hf")]) == 1
    assert ".[hf]" in capsys.readouterr().err and not (tmp_path / "hf").exists()


def test_import_reads_gpt2_vocab_and_merges(bpe_run, tmp_path):
    """A GPT-2 saved with vocab.json + merges.txt (the original format) instead of tokenizer.json."""
    hf = tmp_path / "hf"
    assert main(["export", str(bpe_run), str(hf)]) == 0
    bpe = json.loads((hf / "tokenizer.json").read_text())["model"]
    (hf / "vocab.json").write_text(json.dumps(bpe["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in bpe["merges"]]
    (hf / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (hf / "tokenizer.json").unlink()
    assert main(["import", str(hf), str(tmp_path / "imported")]) == 0
    imported = tinyllm.load(tmp_path / "imported")
    assert imported.tokenizer.encode(UNICODE) == tinyllm.load(bpe_run).tokenizer.encode(UNICODE)
