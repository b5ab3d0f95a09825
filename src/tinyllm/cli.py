"""The `tinyllm` command: train, sample, eval, plot, tasks.

Mistakes are reported as one line on stderr: `tinyllm: error: ...`, exit status 2 for a bad
command line or config, 1 for a problem met while running (a missing file, a corrupt checkpoint),
130 for Ctrl-C. `--debug` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from . import __version__
from .errors import TinyLLMError, UsageError
from .model import GPTConfig
from .tasks import TASKS
from .training import TrainConfig


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (argparse's usage dump is left to --help)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"tinyllm: error: {message} (see '{self.prog} --help')\n")


# ---- value parsers: each turns a bad value into a one-line usage error ----


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    value = finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def duration(text: str) -> float:
    """Seconds from '300', '90s', '5m', '1h', '1m30s'."""
    match = _DURATION.match(str(text).strip())
    if not match or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"expected a duration such as 90s, 5m or 1h30m, got {text!r}")
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    seconds = 3600 * h + 60 * m + s
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration > 0, got {text!r}")
    return seconds


def checkpoint_interval(text: str) -> tuple[str, float]:
    """'200' -> every 200 steps; '90s', '5m' -> every so many seconds."""
    if text.strip().isdigit():
        return ("checkpoint_interval", positive_int(text))
    return ("checkpoint_seconds", duration(text))


# ---- the parser ----

MODEL_FLAGS = {  # flag -> (GPTConfig field, parser, help)
    "--n-layer": ("n_layer", positive_int, "transformer blocks"),
    "--n-head": ("n_head", positive_int, "attention heads (must divide --n-embd)"),
    "--n-embd": ("n_embd", positive_int, "width of the model"),
    "--block-size": ("block_size", positive_int, "context length in tokens"),
    "--dropout": ("dropout", fraction, "dropout probability"),
}
TRAIN_FLAGS = {  # flag -> (TrainConfig field, parser, help)
    "--batch-size": ("batch_size", positive_int, "sequences per micro-batch"),
    "--grad-accum": ("grad_accum", positive_int, "micro-batches per optimizer step"),
    "--lr": ("lr", positive_float, "peak learning rate"),
    "--min-lr": ("min_lr", finite_float, "learning rate at the end of the cosine decay"),
    "--warmup-iters": ("warmup_iters", non_negative_int, "iterations of linear warm-up"),
    "--weight-decay": ("weight_decay", finite_float, "AdamW weight decay (matrices only)"),
    "--grad-clip": ("grad_clip", finite_float, "clip the gradient norm (0: off)"),
    "--eval-interval": ("eval_interval", positive_int, "evaluate and checkpoint every N iterations"),
    "--eval-iters": ("eval_iters", positive_int, "batches per split in each evaluation"),
    "--max-iters": ("max_iters", positive_int, "stop after N iterations"),
    "--max-time": ("max_time", duration, "stop after this long: 300, 90s, 5m, 1h"),
    "--checkpoint-interval": (
        "checkpoint_interval",
        checkpoint_interval,
        "checkpoint every N steps or every 90s/5m (default: at each evaluation)",
    ),
    "--device": ("device", str, "auto (cuda, then mps, then cpu), cpu, cuda or mps"),
    "--seed": ("seed", non_negative_int, "random seed (a CPU run with the same seed repeats exactly)"),
}


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
    group = p.add_argument_group("model")
    for flag, (_, kind, help_text) in MODEL_FLAGS.items():
        group.add_argument(flag, type=kind, help=help_text)
    group.add_argument("--no-bias", action="store_false", dest="bias", help="no biases in Linear/LayerNorm")
    group = p.add_argument_group("training")
    for flag, (_, kind, help_text) in TRAIN_FLAGS.items():
        group.add_argument(flag, type=kind, help=help_text)
    group.add_argument(
        "--dtype", choices=("float32", "bfloat16", "float16"), help="autocast precision (default float32)"
    )
    group.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, help="torch.compile the model (default: off)"
    )
    group.add_argument("--threads", type=positive_int, help="CPU threads (default: PyTorch's, one per core)")
    group.add_argument(
        "--cpu-matmul",
        choices=("auto", "onednn", "default"),
        help="who computes float32 products on the CPU: oneDNN where it is faster here (auto), always, or never",
    )
    for task in TASKS.values():
        if task.options:
            group = p.add_argument_group(f"options of the {task.name} task")
            for option in task.options:
                if option.store is not None:
                    group.add_argument(
                        option.flag, dest=option.dest, action="store_const", const=option.store, help=option.help
                    )
                else:
                    group.add_argument(
                        option.flag, dest=option.dest, type=option.type, choices=option.choices, help=option.help
                    )

    # sample
    p = sub.add_parser("sample", help="complete a prompt with a trained model")
    p.add_argument("run", metavar="RUN", help="run directory, e.g. runs/shakespeare")
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument(
        "--max-new-tokens", type=non_negative_int, default=None, help="tokens to generate (default: the task's)"
    )
    p.add_argument("--temperature", type=finite_float, default=1.0, help="0 is greedy; <1 safer, >1 wilder")
    p.add_argument("--top-k", type=positive_int, default=None, help="sample from the k most likely tokens")
    p.add_argument(
        "--top-p", type=finite_float, default=None, help="sample from the smallest set with this much probability"
    )
    p.add_argument(
        "--min-p",
        type=finite_float,
        default=None,
        help="drop tokens below this fraction of the top token's probability",
    )
    p.add_argument("--repetition-penalty", type=finite_float, default=1.0, help=">1 discourages repeating tokens")
    p.add_argument("--stop", action="append", default=None, help="stop when this text appears (repeatable)")
    p.add_argument("--seed", type=non_negative_int, default=None, help="same seed, same text")
    p.add_argument("--num-samples", type=positive_int, default=1, help="independent samples, decoded as one batch")
    p.add_argument(
        "--no-cache", action="store_true", help="recompute the whole context each step (slow; for comparison)"
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the decode step: faster per token, but compiling takes seconds (long outputs only)",
    )
    p.add_argument("--checkpoint", choices=("last", "best"), default="last", help="which weights to load")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")

    # eval
    p = sub.add_parser("eval", help="test loss and task metrics of a trained run")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--data", help="a local copy of the task's data file")
    p.add_argument("--batches", type=positive_int, default=100, help="batches per split (default 100)")
    p.add_argument("--checkpoint", choices=("last", "best"), default="last")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    # plot
    p = sub.add_parser("plot", help="redraw a run's loss plots from its metrics.jsonl")
    p.add_argument("run", metavar="RUN")

    sub.add_parser("tasks", help="list the tasks")
    return parser


# ---- commands ----


def read_toml(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path} is not valid TOML: {e}") from None
    return {key.replace("-", "_"): value for key, value in values.items()}


def cmd_train(args: argparse.Namespace, parser: Parser) -> int:
    from .runs import train
    from .training import finish_distributed

    given = vars(args)
    if "threads" in given:
        import torch

        torch.set_num_threads(given["threads"])
    task_cls = TASKS[args.task]
    model_fields = {f.name for f in fields(GPTConfig)} - {"vocab_size"}
    train_fields = {f.name for f in fields(TrainConfig)}
    option_dests = {o.dest: (t.name, o.flag) for t in TASKS.values() for o in t.options}

    settings: dict[str, Any] = {}
    if "config" in given:
        file_values = read_toml(given["config"])
        allowed = model_fields | train_fields | {o.dest for o in task_cls.options}
        unknown = sorted(set(file_values) - allowed)
        if unknown:
            raise UsageError(f"{given['config']}: unknown keys: {', '.join(unknown)}")
        if "max_time" in file_values and isinstance(file_values["max_time"], str):
            try:
                file_values["max_time"] = duration(file_values["max_time"])
            except argparse.ArgumentTypeError as e:
                raise UsageError(f"{given['config']}: max_time: {e}") from None
        settings.update(file_values)
    settings.update({k: v for k, v in given.items() if k in model_fields | train_fields | set(option_dests)})
    if isinstance(settings.get("checkpoint_interval"), tuple):  # from the flag: steps or seconds
        key, value = settings.pop("checkpoint_interval")
        settings[key] = value

    task_options = {}
    for dest, (task_name, flag) in option_dests.items():
        if dest in settings and task_name != args.task and dest not in {o.dest for o in task_cls.options}:
            raise UsageError(f"{flag} is an option of the {task_name} task, not of {args.task}")
    for option in task_cls.options:
        if option.dest in settings:
            task_options[option.dest] = settings.pop(option.dest)

    result = train(
        args.task,
        out_dir=given.get("out"),
        task_options=task_options,
        model_overrides={k: v for k, v in settings.items() if k in model_fields},
        train_overrides={k: v for k, v in settings.items() if k in train_fields},
        data_path=given.get("data"),
        resume=given.get("resume", False),
        overwrite=given.get("overwrite", False),
        progress_bar=not given.get("no_progress", False),
    )
    finish_distributed()  # after a torchrun job's training; on an error torchrun stops the other ranks
    loss = f"test loss {result.test_loss:.4f}" if result.test_loss is not None else "no evaluation"
    print(f"done: {result.iters} iterations in {result.elapsed_s:.0f}s, {loss}; run saved in {result.run_dir}")
    return 0


def cmd_sample(args: argparse.Namespace, parser: Parser) -> int:
    from .runs import load

    run = load(args.run, checkpoint=args.checkpoint, device=args.device)
    options = dict(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        stop=[s.replace("\\n", "\n").replace("\\t", "\t") for s in args.stop or []],  # "\n" typed in a shell
        seed=args.seed,
        use_cache=not args.no_cache,
        compile=args.compile,
    )
    echo = run.task.continues_text
    if args.num_samples == 1:
        pieces = run.stream(args.prompt, args.max_new_tokens, **options)  # validates first
        if echo:
            sys.stdout.write(args.prompt)
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        texts = run.sample(args.prompt, args.num_samples, args.max_new_tokens, **options)
        for i, text in enumerate(texts):
            if i:
                print("-" * 40)
            print((args.prompt if echo else "") + text)
    return 0


def cmd_eval(args: argparse.Namespace, parser: Parser) -> int:
    from .runs import evaluate, load

    run = load(args.run, checkpoint=args.checkpoint, device=args.device)
    result = evaluate(run, data_path=args.data, batches=args.batches)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value:.4f}" if isinstance(value, float) else f"{key:>16}: {value}")
    return 0


def cmd_plot(args: argparse.Namespace, parser: Parser) -> int:
    from .plots import plot_run
    from .runs import read_run_config

    config = read_run_config(Path(args.run))
    for path in plot_run(Path(args.run), title=config["task"]):
        print(path)
    return 0


def cmd_tasks(args: argparse.Namespace, parser: Parser) -> int:
    width = max(len(name) for name in TASKS)
    for name, task in TASKS.items():
        print(f"{name:<{width}}  {task.description}")
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "plot": cmd_plot, "tasks": cmd_tasks}


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
