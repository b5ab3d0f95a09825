"""The `tinyllm` command end to end, as a user runs it.

Most calls run `cli.main(argv)` in this process -- what the console script calls, with the same
exit status and the same printed words -- because a subprocess per call imports torch again (about
4 s on a 2-core CPU). The console script itself, `python -m tinyllm` and `--debug`'s traceback
are checked in real subprocesses.
"""

import contextlib
import io
import json
import os
import re
import subprocess
import sys

import pytest

from tinyllm.cli import main

from .conftest import SHAKESPEARE_EXCERPT, TINY_CLI_FLAGS

TINY = TINY_CLI_FLAGS


def tinyllm(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    """`tinyllm ARGS` in this process: its exit status and what it wrote to stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    try:
        os.chdir(cwd or here)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse's usage errors exit
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        os.chdir(here)
    proc = subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def tinyllm_process(*args) -> subprocess.CompletedProcess:
    """`python -m tinyllm ARGS` in a subprocess."""
    command = [sys.executable, "-m", "tinyllm", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_train_sample_eval_plot(tmp_path):
    tinyllm("train", "shakespeare", *TINY, "--max-iters", 20, "--eval-interval", 10, "--no-progress", cwd=tmp_path)
    run = tmp_path / "runs" / "shakespeare"  # the default --out
    for name in (
        "model.safetensors",
        "best.safetensors",
        "resume.safetensors",
        "config.json",
        "tokenizer.json",
        "metrics.jsonl",
        "train_loss.png",
        "test_loss.png",
        "lr.png",
    ):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert (
        config["task"] == "shakespeare"
        and config["model"]["n_layer"] == 1
        and config["task_options"] == {"lowercase": True}
    )
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in lines] == list(range(1, 21))
    assert "test_loss" in lines[9] and "test_loss" in lines[19] and "test_loss" not in lines[0]

    prompt = "we are accounted poor citizens, the patricians good."
    out = tinyllm("sample", run, "--prompt", prompt, "--max-new-tokens", 40, "--seed", 1).stdout
    assert out.startswith(prompt) and out.endswith("\n") and len(out) == len(prompt) + 40 + 1
    assert tinyllm("sample", run, "--prompt", prompt, "--max-new-tokens", 40, "--seed", 1).stdout == out

    # a run trained on a --data file is evaluated on it too (shakespeare keeps no data path)
    result = json.loads(tinyllm("eval", run, "--json", "--batches", 5, "--data", SHAKESPEARE_EXCERPT).stdout)
    assert result["task"] == "shakespeare" and 0 < result["test_loss"] < 4.5

    (run / "lr.png").unlink()
    assert "lr.png" in tinyllm("plot", run).stdout
    assert (run / "lr.png").is_file()


def test_console_script_and_module_agree():
    import shutil

    exe = shutil.which("tinyllm", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, "the tinyllm console script is installed next to python"
    a = subprocess.run([exe, "tasks"], capture_output=True, text=True).stdout
    assert a == tinyllm_process("tasks").stdout == tinyllm("tasks").stdout and "shakespeare" in a


def test_toml_config_and_cli_precedence(tmp_path):
    (tmp_path / "c.toml").write_text(
        'n_layer = 2\nn_embd = 32\nn_head = 2\nblock_size = 16\nmax_iters = 4\nmax_time = "1m"\nbatch_size = 4\n'
    )
    tinyllm(
        "train",
        "shakespeare",
        "--config",
        tmp_path / "c.toml",
        "--n-layer",
        1,
        "--out",
        tmp_path / "r",
        "--eval-interval",
        2,
        "--eval-iters",
        1,
        "--no-progress",
        "--data",
        SHAKESPEARE_EXCERPT,
    )
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["model"]["n_layer"] == 1  # the flag beats the file
    assert config["model"]["n_embd"] == 32 and config["train"]["max_time"] == 60.0 and config["train"]["max_iters"] == 4


def test_no_lowercase_keeps_capitals(tmp_path):
    tinyllm(
        "train",
        "shakespeare",
        *TINY,
        "--max-iters",
        2,
        "--eval-interval",
        2,
        "--no-lowercase",
        "--out",
        tmp_path / "r",
        "--no-progress",
    )
    vocab = json.loads((tmp_path / "r" / "tokenizer.json").read_text())
    assert "A" in vocab["chars"] and len(vocab["chars"]) == 65 and vocab["lowercase"] is False


# (arguments, exit status, words the one-line message must contain). Placeholders in braces are
# files made by the test: {empty} {binary} {short} {badkey} {badtoml} {file} {run} {out}
BAD = [
    (["train", "nosuchtask"], 2, "invalid choice"),
    (["frobnicate"], 2, "invalid choice"),
    (["train", "shakespeare", "--frobnicate"], 2, "unrecognized arguments"),
    (["train", "shakespeare", "--n-embd", "30", "--n-head", "4"], 2, "divisible"),
    (["train", "shakespeare", "--n-layer", "0"], 2, "--n-layer"),
    (["train", "shakespeare", "--n-head", "-2"], 2, "--n-head"),
    (["train", "shakespeare", "--dropout", "1.5"], 2, "--dropout"),
    (["train", "shakespeare", "--block-size", "x"], 2, "--block-size"),
    (["train", "shakespeare", "--lr", "-1"], 2, "--lr"),
    (["train", "shakespeare", "--lr", "nan"], 2, "--lr"),
    (["train", "shakespeare", "--batch-size", "many"], 2, "--batch-size"),
    (["train", "shakespeare", "--max-iters", "0"], 2, "--max-iters"),
    (["train", "shakespeare", "--max-time", "soon"], 2, "duration"),
    (["train", "shakespeare", "--max-time", "-5m"], 2, "--max-time"),
    (["train", "shakespeare", "--max-time", "0s"], 2, "duration"),
    (["train", "shakespeare", "--checkpoint-interval", "often"], 2, "--checkpoint-interval"),
    (["train", "shakespeare", "--device", "tpu"], 2, "device"),
    (["train", "shakespeare", "--cpu-matmul", "fast"], 2, "--cpu-matmul"),
    (["train", "shakespeare", "--cpu-matmul", "onednn", "--dtype", "bfloat16"], 2, "cpu_matmul"),
    (["train", "shakespeare", "--digits", "3"], 2, "addition"),
    (["train", "addition", "--digits", "0"], 2, "--digits"),
    (["train", "addition", "--loss", "half"], 2, "--loss"),
    (["train", "shakespeare", "--config", "/nonexistent.toml"], 2, "not found"),
    (["train", "shakespeare", "--config", "{badtoml}"], 2, "TOML"),
    (["train", "shakespeare", "--config", "{badkey}"], 2, "unknown keys"),
    (["train", "shakespeare", "--data", "/nonexistent/file.txt"], 1, "not found"),
    (["train", "shakespeare", "--data", "{empty}"], 1, "empty"),
    (["train", "shakespeare", "--data", "{binary}"], 1, "UTF-8"),
    (["train", "shakespeare", "--data", "{short}"], 2, "too long for this data"),
    (["train", "shakespeare", "--out", "{run}"], 2, "--overwrite"),
    (["sample", "/nonexistent/run", "--prompt", "hi"], 1, "not found"),
    (["sample", "{run}"], 2, "--prompt"),
    (["sample", "{run}", "--prompt", ""], 2, "empty"),
    (["sample", "{run}", "--prompt", "hi ¤"], 2, "'¤'"),
    (["sample", "{run}", "--prompt", "hi", "--temperature", "-1"], 2, "temperature"),
    (["sample", "{run}", "--prompt", "hi", "--top-p", "1.5"], 2, "top_p"),
    (["sample", "{run}", "--prompt", "hi", "--top-k", "0"], 2, "--top-k"),
    (["sample", "{run}", "--prompt", "hi", "--min-p", "2"], 2, "min_p"),
    (["sample", "{run}", "--prompt", "hi", "--repetition-penalty", "0"], 2, "repetition_penalty"),
    (["sample", "{run}", "--prompt", "hi", "--max-new-tokens", "-5"], 2, "--max-new-tokens"),
    (["sample", "{run}", "--prompt", "hi", "--compile", "--no-cache"], 2, "compile"),
    (["sample", "{file}", "--prompt", "hi"], 1, "not a run directory"),
    (["eval", "/tmp"], 1, "not a tinyllm run"),
    (["eval", "{run}", "--batches", "0"], 2, "--batches"),
    (["plot", "/nonexistent/run"], 1, "not found"),
]


@pytest.fixture
def bad_files(tmp_path, tiny_run):
    files = {
        "empty": b"",
        "binary": b"\xff\xfe\x00\x01" * 10,
        "short": b"just a few words\n",
        "badtoml": b"n_layer = = 3",
        "badkey": b"n_layers = 3",
        "file": b"x",
    }
    paths = {}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        paths[name] = str(tmp_path / name)
    return {**paths, "run": str(tiny_run), "out": str(tmp_path / "out")}


@pytest.mark.parametrize("args, code, message", BAD, ids=[" ".join(a)[:60] for a, _, _ in BAD])
def test_bad_invocations_are_one_clear_line(args, code, message, bad_files):
    args = [a.format(**bad_files) for a in args]
    if args[0] == "train" and "--out" not in args:
        args += ["--out", bad_files["out"]]
    if args[0] == "train" and "--data" not in args:
        args += ["--data", SHAKESPEARE_EXCERPT]
    proc = tinyllm(*args, check=False)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert proc.stdout == ""  # nothing half-done on stdout


def test_runtime_bad_inputs(tiny_run, tmp_path):
    proc = tinyllm("sample", tiny_run, "--prompt", "hello ¤ world", check=False)
    assert proc.returncode == 2 and "'¤'" in proc.stderr and "Traceback" not in proc.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    proc = tinyllm("train", "shakespeare", "--data", empty, "--out", tmp_path / "o", check=False)
    assert proc.returncode == 1 and "empty" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = tinyllm_process("--debug", "sample", tiny_run, "--prompt", "¤")
    assert "Traceback" in proc.stderr  # --debug shows it


def test_sample_options_stop_and_num_samples(tiny_run, monkeypatch):
    base = [
        "sample",
        tiny_run,
        "--prompt",
        "the ",
        "--max-new-tokens",
        60,
        "--temperature",
        0.9,
        "--top-k",
        10,
        "--top-p",
        0.95,
        "--min-p",
        0.01,
        "--repetition-penalty",
        1.2,
    ]
    free = tinyllm(*base, "--seed", 5).stdout
    completion = free[len("the ") : -1]
    stop = completion[10:12]  # two characters the model does produce
    out = tinyllm(*base, "--seed", 5, f"--stop={stop}").stdout
    cut = completion.find(stop)
    assert out == "the " + completion[:cut] + "\n"  # ends just before the stop string, which is not printed
    assert tinyllm(*base, "--seed", 5, "--no-cache").stdout == free  # the cache changes nothing
    # --compile sends every cached one-token step through the compiled decode step (whose logits
    # test_compiled_decode.py compares with the eager ones; here it runs eagerly, to keep this quick)
    from tinyllm import sampling

    steps = []

    def counted_step(model, idx, cache):
        steps.append(idx.shape)
        return sampling.next_token_logits(model, idx, cache)

    monkeypatch.setattr(sampling, "compiled_decode_step", counted_step)
    assert tinyllm(*base, "--seed", 5, "--compile").stdout == free
    # every step but the prefills (the prompt's, and each time the 32-token window jumps) is one token
    assert len(steps) > 40 and all(shape == (1, 1) for shape in steps)

    many = tinyllm(*base, "--seed", 1, "--num-samples", 3).stdout
    samples = many.rstrip("\n").split("\n" + "-" * 40 + "\n")
    assert len(samples) == 3 and all(s.startswith("the ") for s in samples)
    assert len(set(samples)) == 3


def test_sample_stats_counts_the_tokens_of_the_generation(tiny_run):
    base = ["sample", tiny_run, "--prompt", "the ", "--max-new-tokens", 20, "--seed", 1]
    plain = tinyllm(*base)
    timed = tinyllm(*base, "--stats")
    assert timed.stdout == plain.stdout and plain.stderr == ""  # the text is untouched; stats go to stderr
    line = r"^{n} tokens in [0-9.]+ s: [0-9,]+ tokens/s \({how}; prefill included\)\n$"
    assert re.match(line.format(n=20, how="KV cache"), timed.stderr), timed.stderr
    uncached = tinyllm(*base, "--stats", "--no-cache")
    assert uncached.stdout == plain.stdout and re.match(line.format(n=20, how="no cache"), uncached.stderr)
    batch = tinyllm(*base, "--stats", "--num-samples", 3)
    assert re.match(line.format(n=60, how="KV cache"), batch.stderr), batch.stderr  # every row counted


def test_plot_compares_several_runs_and_refuses_what_it_cannot_draw(tiny_run, tmp_path):
    import shutil

    import matplotlib.image

    for name in ("a", "b"):
        shutil.copytree(tiny_run, tmp_path / name, ignore=shutil.ignore_patterns(".lock"))
    out = tmp_path / "charts" / "cmp.png"
    done = tinyllm("plot", tmp_path / "a", tmp_path / "b", "--x", "time", "--out", out)
    assert done.stdout.strip() == str(out) and matplotlib.image.imread(out).std() > 0
    for axis in ("step", "epoch", "tokens"):
        tinyllm("plot", tmp_path / "a", tmp_path / "b", "--metric", "eval_train_loss", "--x", axis, "--out", out)
    assert not (tmp_path / "a" / "test_loss_by_step.png").exists()  # --out given: nothing else written

    unknown = tinyllm("plot", tmp_path / "a", tmp_path / "b", "--metric", "accuracy", check=False)
    assert unknown.returncode == 2 and "has no metric 'accuracy'; it has:" in unknown.stderr
    assert "test_loss" in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1
    missing = tinyllm("plot", tmp_path / "a", tmp_path / "nowhere", check=False)
    assert missing.returncode == 2 and "not a tinyllm run" in missing.stderr
    (tmp_path / "b" / "metrics.jsonl").write_text("")
    empty = tinyllm("plot", tmp_path / "a", tmp_path / "b", check=False)
    assert empty.returncode == 2 and "has no metrics yet" in empty.stderr

    import tinyllm as tl

    sort = tmp_path / "sort"  # a task that draws fresh problems: no epochs
    train = {"max_iters": 2, "max_time": None, "eval_interval": 1, "eval_iters": 1, "batch_size": 4}
    tl.train("sort", out_dir=sort, task_options={"length": 3}, train_overrides=train, progress_bar=False, log=print)
    no_epochs = tinyllm("plot", tmp_path / "a", sort, "--x", "epoch", check=False)
    assert no_epochs.returncode == 2 and "no epoch axis" in no_epochs.stderr and "Traceback" not in no_epochs.stderr
