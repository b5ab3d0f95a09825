"""The `tinyllm` command: train, sample, eval, plot, export, import, serve, tasks.

Mistakes are reported as one line on stderr: `tinyllm: error: ...`, exit status 2 for a bad
command line or config, 1 for a problem met while running (a missing file, a corrupt checkpoint),
130 for Ctrl-C. `--debug` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import __version__
from .batching import MAX_BATCH, MAX_QUEUE
from .config import TrainConfig
from .errors import TinyLLMError, UsageError
from .flags import CheckpointEvery, add_config_flags, add_task_flags, checkpoint_name, count, length_list
from .model import GPTConfig
from .sampling import SamplingParams
from .speed import SpeedSettings
from .tasks import TASKS


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (argparse's usage dump is left to --help)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"tinyllm: error: {message} (see '{self.prog} --help')\n")


# ---- the parser ----


def add_eval_parser(sub) -> None:
    """`tinyllm eval RUN`: test loss and task metrics, or accuracy by operand length (--lengths)."""
    p = sub.add_parser("eval", help="test loss and task metrics of a trained run")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--data", help="a local copy of the task's data file")
    p.add_argument("--batches", type=lambda t: count(t, 1), default=100, help="batches per split (default 100)")
    p.add_argument(
        "--checkpoint", type=checkpoint_name, default="last", help="last (default), best, or step:N (a snapshot)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--lengths",
        type=length_list,
        metavar="RANGE",
        help="addition: exact match per operand length instead, e.g. 1-30 or 5,10,20 (plots accuracy_by_length.png)",
    )


def add_sample_parser(sub) -> None:
    """`tinyllm sample RUN --prompt TEXT`: complete prompts with a trained model."""
    p = sub.add_parser("sample", help="complete a prompt with a trained model")
    p.add_argument("run", metavar="RUN", help="run directory, e.g. runs/shakespeare")
    p.add_argument(
        "--prompt",
        action="append",
        required=True,
        help="the text to continue; repeat it for several prompts, decoded together in one batch",
    )
    p.add_argument(
        "--max-new-tokens", type=lambda t: count(t, 0), default=None, help="tokens to generate (default: the task's)"
    )
    add_config_flags(p.add_argument_group("sampler"), SamplingParams, default=argparse.SUPPRESS)
    p.add_argument("--stop", action="append", default=None, help="stop when this text appears (repeatable)")
    p.add_argument("--seed", type=lambda t: count(t, 0), default=None, help="same seed, same text")
    p.add_argument(
        "--num-samples", type=lambda t: count(t, 1), default=1, help="independent samples, decoded as one batch"
    )
    p.add_argument(
        "--no-cache", action="store_true", help="recompute the whole context each step (slow; for comparison)"
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the decode step: faster per token, but compiling takes seconds (long outputs only)",
    )
    p.add_argument(
        "--checkpoint",
        type=checkpoint_name,
        default="last",
        help="which weights: last (default), best, or step:N (a snapshot, see the run's snapshots/)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    p.add_argument(
        "--stats", action="store_true", help="print the tokens, seconds and tokens/s of the generation to stderr"
    )


def add_serve_parser(sub) -> None:
    """`tinyllm serve [FOLDER_OR_RUN]`: the local web page, and the decode loops behind it."""
    p = sub.add_parser("serve", help="a local web page that shows the models inside")
    p.add_argument(
        "path", nargs="?", default="runs", metavar="FOLDER_OR_RUN", help="runs folder or one run (default runs)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=lambda t: count(t, 0), default=8000, help="port (default 8000)")
    p.add_argument("--open", action="store_true", help="open the page in the system's browser")
    p.add_argument(
        "--max-batch",
        type=lambda t: count(t, 1),
        default=MAX_BATCH,
        help=f"generations of a run decoded together, one token each per step (default {MAX_BATCH}); more wait",
    )
    p.add_argument(
        "--max-queue",
        type=lambda t: count(t, 0),
        default=MAX_QUEUE,
        help=f"generations that may wait for a place (default {MAX_QUEUE}); past it a request gets 429 + Retry-After",
    )
    p.add_argument(
        "--threads",
        type=lambda t: count(t, 1),
        default=None,
        help="PyTorch's threads for the models (default: the cores less one, at least 1: one is left for the requests)",
    )


def build_parser() -> Parser:
    parser = Parser(prog="tinyllm", description="Tiny GPT-style language models to train, sample and study.")
    parser.add_argument("--version", action="version", version=f"tinyllm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    # train
    p = sub.add_parser("train", help="train a task's model into a run directory", argument_default=argparse.SUPPRESS)
    p.add_argument("task", choices=list(TASKS), metavar="TASK", help=f"one of: {', '.join(TASKS)}")
    p.add_argument("--out", help="run directory (default: runs/TASK)")
    p.add_argument("--config", help="TOML file of options (keys as the flags, e.g. n_layer = 4, max_time = '2m')")
    p.add_argument("--data", help="a local copy of the task's data file (no download)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--init", metavar="RUN_OR_HF_DIR", help="start from these weights and tokenizer (a run, or a GPT-2 folder)"
    )
    add_config_flags(p.add_argument_group("model"), GPTConfig)
    group = p.add_argument_group("training")
    add_config_flags(group, TrainConfig, skip=("checkpoint_interval",))  # steps or seconds: below
    group.add_argument(
        "--checkpoint-interval",
        action=CheckpointEvery,
        help="checkpoint every N steps or every 90s/5m (default: at each evaluation)",
    )
    group.add_argument("--threads", type=lambda t: count(t, 1), help="CPU threads (default: PyTorch's, one per core)")
    add_config_flags(p.add_argument_group("speed (the same maths, faster on some CPUs)"), SpeedSettings)
    add_task_flags(p, TASKS)

    add_sample_parser(sub)
    add_eval_parser(sub)

    # plot
    p = sub.add_parser("plot", help="redraw a run's plots, or draw one metric of several runs on one chart")
    p.add_argument("runs", metavar="RUN", nargs="+", help="one run (its PNGs redrawn) or several (compared)")
    p.add_argument("--metric", help="the metrics.jsonl key to compare (default test_loss)")
    p.add_argument("--x", choices=("step", "time", "epoch", "tokens"), help="the horizontal axis (default step)")
    p.add_argument("--out", help="the PNG to write (default METRIC_by_X.png)")

    # export / import
    p = sub.add_parser("export", help="write a run as a Hugging Face model folder (needs transformers)")
    p.add_argument("run", metavar="RUN")
    p.add_argument("out", metavar="OUT", help="the folder to write")
    p.add_argument("--checkpoint", choices=("last", "best"), default="last", help="which weights to export")
    p.add_argument("--overwrite", action="store_true", help="replace what is in OUT")
    p = sub.add_parser("import", help="make a run of a local GPT-2-family Hugging Face folder")
    p.add_argument("hf_dir", metavar="HF_DIR")
    p.add_argument("out", metavar="OUT", help="the run directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace a run in OUT")

    add_serve_parser(sub)

    sub.add_parser("tasks", help="list the tasks")
    return parser


# ---- commands ----


NOT_SETTINGS = (
    "command",
    "debug",
    "task",
    "out",
    "config",
    "data",
    "resume",
    "overwrite",
    "no_progress",
    "init",
    "threads",
)


def cmd_train(args: argparse.Namespace, parser: Parser) -> int:
    from .runs import train

    given = vars(args)
    if "threads" in given:
        import torch

        torch.set_num_threads(given["threads"])
    result = train(
        args.task,
        out_dir=given.get("out"),
        settings={key: value for key, value in given.items() if key not in NOT_SETTINGS},  # resolve.py sorts them
        config_file=given.get("config"),
        data_path=given.get("data"),
        resume=given.get("resume", False),
        overwrite=given.get("overwrite", False),
        progress_bar=not given.get("no_progress", False),
        init=given.get("init"),
    )
    loss = f"test loss {result.test_loss:.4f}" if result.test_loss is not None else "no evaluation"
    print(f"done: {result.iters} iterations in {result.elapsed_s:.0f}s, {loss}; run saved in {result.run_dir}")
    return 0


def cmd_sample(args: argparse.Namespace, parser: Parser) -> int:
    from .inference import load

    run = load(args.run, checkpoint=args.checkpoint, device=args.device)
    sampler = {name: getattr(args, name) for name in SamplingParams.names() if hasattr(args, name)}
    options = dict(
        **sampler,
        stop=[s.replace("\\n", "\n").replace("\\t", "\t") for s in args.stop or []],  # "\n" typed in a shell
        seed=args.seed,
        use_cache=not args.no_cache,
        compile=args.compile,
    )
    echo = run.task.continues_text
    start = time.perf_counter()
    if len(args.prompt) == 1 and args.num_samples == 1:
        pieces = run.stream(args.prompt[0], args.max_new_tokens, **options)  # validates first
        if echo:
            sys.stdout.write(args.prompt[0])
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:  # every prompt's samples decoded together, then printed in order
        samples = run.sample(args.prompt, args.num_samples, args.max_new_tokens, **options)
        texts = [
            (prompt if echo else "") + text for prompt, row in zip(args.prompt, samples, strict=True) for text in row
        ]
        print(("\n" + "-" * 40 + "\n").join(texts))
    if args.stats:
        seconds = time.perf_counter() - start
        how = ("KV cache" if not args.no_cache else "no cache") + (", compiled" if args.compile else "")
        print(
            f"{run.generated_tokens} tokens in {seconds:.3f} s: {run.generated_tokens / seconds:,.0f} tokens/s "
            f"({how}; prefill included)",
            file=sys.stderr,
        )
    return 0


def cmd_eval(args: argparse.Namespace, parser: Parser) -> int:
    from .inference import evaluate, evaluate_lengths, load

    run = load(args.run, checkpoint=args.checkpoint, device=args.device)
    if args.lengths:
        result = evaluate_lengths(run, args.lengths)
        if args.json:
            print(json.dumps(result))
            return 0
        print(f"{result['run']}: {result['positions']} positions, trained on 1-{result['trained_digits']} digits")
        print("digits  exact match")
        for length, accuracy in result["accuracy"].items():
            print(f"{length:>6}  {accuracy if isinstance(accuracy, str) else f'{accuracy:.1%}'}")
        print(f"plot: {run.run_dir / 'accuracy_by_length.png'}")
        return 0
    result = evaluate(run, data_path=args.data, batches=args.batches)
    if args.json:
        print(json.dumps(result))
        return 0
    baselines, note = result.pop("baselines"), result.pop("baselines_note", None)
    bits, passed = result.pop("baselines_bits_per_char", None) or {}, result.pop("baselines_passed_at", {})
    for key, value in result.items():
        print(f"{key:>18}: {value:.4f}" if isinstance(value, float) else f"{key:>18}: {value}")
    if baselines is None:
        print(f"         baselines: {note}")
        return 0
    print("counting baselines (this run's training split; test loss; when the model first went below):")
    for name, loss in baselines.items():
        when = passed[name]
        at = f"step {when['step']:,} ({when['seconds']:.0f} s)" if when else "not passed"
        per_char = f", {bits[name]:.3f} bits/char" if name in bits else ""
        print(f"{name:>18}: {loss:.4f} nats/token{per_char}, {at}")
    if note:
        print(f"         baselines: {note}")
    return 0


def cmd_plot(args: argparse.Namespace, parser: Parser) -> int:
    from .plots import plot_run, plot_runs
    from .rundir import RunDirectory

    if len(args.runs) == 1 and args.metric is None and args.x is None and args.out is None:
        config = RunDirectory(args.runs[0]).read_config()  # one run: its own PNGs, as training draws them
        _count_baselines(args.runs[0])
        for path in plot_run(Path(args.runs[0]), title=config["task"]):
            print(path)
        return 0
    print(plot_runs([Path(r) for r in args.runs], args.metric or "test_loss", args.x or "step", args.out))
    return 0


def _count_baselines(run_dir: str) -> None:
    """Count a text run's baselines for its test-loss plot, if its data can be found (else say so)."""
    from .inference import load, run_baselines

    try:
        run_baselines(load(run_dir))
    except TinyLLMError as e:
        print(f"tinyllm: no counting baselines on the plot: {e}", file=sys.stderr)


def cmd_export(args: argparse.Namespace, parser: Parser) -> int:
    from .hf import export_run

    out = export_run(args.run, args.out, checkpoint=args.checkpoint, overwrite=args.overwrite)
    print(f"exported {args.run} to {out}: load it with transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0


def cmd_import(args: argparse.Namespace, parser: Parser) -> int:
    from .hf import import_hf

    out = import_hf(args.hf_dir, args.out, overwrite=args.overwrite)
    print(f"imported {args.hf_dir} as the text run {out}: tinyllm sample {out} --prompt ...")
    return 0


def cmd_serve(args: argparse.Namespace, parser: Parser) -> int:
    from .web import serve

    if args.port > 65535:
        raise UsageError(f"--port must be from 0 to 65535, got {args.port}")
    serve(
        args.path,
        host=args.host,
        port=args.port,
        open_browser=args.open,
        max_batch=args.max_batch,
        threads=args.threads,
        max_queue=args.max_queue,
    )
    return 0


def cmd_tasks(args: argparse.Namespace, parser: Parser) -> int:
    width = max(len(name) for name in TASKS)
    for name, task in TASKS.items():
        print(f"{name:<{width}}  {task.description}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "eval": cmd_eval,
    "plot": cmd_plot,
    "export": cmd_export,
    "import": cmd_import,
    "serve": cmd_serve,
    "tasks": cmd_tasks,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args, parser)
    except TinyLLMError as e:
        if args.debug:
            raise
        print(f"tinyllm: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("\ntinyllm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tinyllm sample ... | head`
        return 0
    except OSError as e:  # a full disk, a read-only folder: the system's words, one line
        if args.debug:
            raise
        print(f"tinyllm: error: {e}", file=sys.stderr)
        return 1
