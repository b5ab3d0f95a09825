"""Using a trained run: `load()` it, then complete, stream or sample prompts, or `evaluate()` it.

    run = tinyllm.load("runs/shakespeare")      # a Run: .model (a GPT), .tokenizer, .task
    run.complete("to be", max_new_tokens=100, temperature=0.8, seed=0)

`Run` turns text into token ids with the task's tokenizer, hands them to the decode loop in
`sampling.py` (which knows only token ids), and turns the ids back into text, holding back anything
that might be the start of a stop string.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from .batching import MAX_BATCH, MAX_QUEUE, DecodeLoop, Generation
from .bpe import HFTokenizer
from .checkpoint import load_model_tensors
from .errors import CheckpointError, ConfigError, DataError, TinyLLMError, UsageError
from .model import GPT, GPTConfig
from .rundir import RunDirectory
from .runtime import resolve_device
from .sampling import SamplingParams, stream
from .settings import non_negative_int, positive_int
from .snapshots import load_snapshot, parse_step
from .tasks import Task, get_task
from .tokenizer import tokenizer_from_dict
from .training import mean_loss


def _stop_index(text: str, stops: list[str]) -> int:
    """Where the first stop string begins in `text`, or -1."""
    return min((text.find(s) for s in stops if s in text), default=-1)


class TextPieces:
    """A generation's text, piece by piece as its tokens arrive (`feed`), then the rest (`finish`).

    Text that might be the start of a stop string is held back until it is clear that it is not,
    so a stop string is never shown; `stopped` turns True when one appears. A task whose
    completion is not a continuation of the prompt (addition's reversed answer) shows it at the end.
    """

    def __init__(self, task: Task, prompt: str, stops: list[str]) -> None:
        self.task, self.prompt, self.stops = task, prompt, stops
        self.holdback = max((len(s) for s in stops), default=1) - 1
        self.ids: list[int] = []
        self.shown = 0
        self.stopped = False

    def feed(self, token: int) -> str:
        """The new text this token makes showable ("" for none yet)."""
        self.ids.append(token)
        if not self.task.continues_text or self.stopped:
            return ""
        text = self.task.tokenizer.decode(self.ids)
        cut = _stop_index(text, self.stops)
        if cut >= 0:
            self.stopped = True
            piece, self.shown = text[self.shown : cut], cut
            return piece
        if len(text) - self.holdback > self.shown:
            piece, self.shown = text[self.shown : len(text) - self.holdback], len(text) - self.holdback
            return piece
        return ""

    def finish(self) -> str:
        """What is left to show once the generation has ended."""
        return "" if self.stopped else self.text(self.ids)[self.shown :]

    def text(self, ids: list[int]) -> str:
        """The whole completion of these token ids, cut at the first stop string."""
        final = self.task.decode_completion(self.prompt, ids)
        cut = _stop_index(final, self.stops)
        return final if cut < 0 else final[:cut]


class Run:
    """A trained model, its tokenizer and its task, ready to complete prompts."""

    def __init__(self, run_dir: Path, model: GPT, task: Task, config: dict[str, Any], checkpoint: str = "last") -> None:
        self.run_dir = Path(run_dir)
        self.model = model
        self.task = task
        self.tokenizer = task.tokenizer
        self.config = config
        self.checkpoint = checkpoint  # which weights: last, best or step:N
        self.generated_tokens = 0  # by the last stream() or sample(), every row counted (tinyllm sample --stats)
        self._loop: DecodeLoop | None = None
        self._making_loop = threading.Lock()

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r}, task={self.task.name!r}, params={self.model.num_params():,})"

    @property
    def device(self) -> torch.device:
        return self.model.transformer.wte.weight.device

    def decode_loop(self, max_batch: int = MAX_BATCH, max_queue: int = MAX_QUEUE) -> DecodeLoop:
        """The loop that decodes this run's generations together (`batching.py`), made once."""
        with self._making_loop:
            if self._loop is None:
                self._loop = DecodeLoop(self.model, max_batch, max_queue)
        return self._loop

    def at_step(self, step: int) -> Run:
        """This run with the weights of its snapshot at `step` (`snapshots.py`); the task and tokenizer shared."""
        model = copy.deepcopy(self.model)
        load_model_tensors(model, load_snapshot(self.run_dir, step), self.run_dir / "snapshots")
        return Run(self.run_dir, model, self.task, self.config, f"step:{step}")

    def close(self) -> None:
        """Let the decode loop's thread (a server's) end once its generations are done."""
        if self._loop is not None:
            self._loop.close()

    def _generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        return generator

    def _prepare(self, prompt: str, stop: str | list[str] | None) -> tuple[list[int], list[str], list[list[int]]]:
        """The prompt's ids, the stop strings and their ids, checked."""
        if not isinstance(prompt, str) or prompt == "":
            raise UsageError("the prompt is empty: give at least one character")
        ids = self.task.encode_prompt(prompt)
        stops = [s for s in ([stop] if isinstance(stop, str) else list(stop or [])) if s]
        return ids, stops, [self.tokenizer.encode(s) for s in stops]

    def stream(
        self,
        prompt: str,
        max_new_tokens: int | None = None,
        *,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        use_cache: bool = True,
        compile: bool = False,
        **sampler: Any,
    ) -> Iterator[str]:
        """Yield the completion of `prompt` piece by piece, decoded on its own, as it is generated.

        `sampler`: the settings of `sampling.SamplingParams` by name (temperature=0.8, top_k=20, ...).
        Text that might be the start of a stop string is held back until it is clear that it is
        not, so a stop string is never shown.
        """
        # everything is checked here, before the first piece is asked for (a generator would wait)
        params = SamplingParams.from_options(sampler)
        max_new_tokens = self.task.max_new_tokens(prompt) if max_new_tokens is None else max_new_tokens
        ids, stops, stop_ids = self._prepare(prompt, stop)
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        options = dict(stop=stop_ids, use_cache=use_cache, generator=self._generator(seed), compile=compile)
        tokens = stream(self.model, idx, max_new_tokens, params, **options)  # checks its arguments now
        return self._pieces(TextPieces(self.task, prompt, stops), tokens)

    def _pieces(self, pieces: TextPieces, tokens: Iterator[torch.Tensor]) -> Iterator[str]:
        self.generated_tokens = 0
        for token in tokens:
            self.generated_tokens += 1
            piece = pieces.feed(int(token[0]))
            if piece:
                yield piece
            if pieces.stopped:
                return
        rest = pieces.finish()
        if rest:
            yield rest

    def complete(self, prompt: str, max_new_tokens: int | None = None, **options: Any) -> str:
        """The completion of `prompt` (without the prompt). Options as in `stream`."""
        return "".join(self.stream(prompt, max_new_tokens, **options))

    def submit(
        self,
        prompt: str,
        max_new_tokens: int | None = None,
        *,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        notify: Callable[[], None] | None = None,
        loop: DecodeLoop | None = None,
        **sampler: Any,
    ) -> tuple[Generation, TextPieces]:
        """Queue `prompt` in the run's decode loop (or `loop`); everything is checked first.
        Returns the generation (its `tokens` grow as the loop steps) and its `TextPieces`."""
        params = SamplingParams.from_options(sampler)
        max_new_tokens = self.task.max_new_tokens(prompt) if max_new_tokens is None else max_new_tokens
        non_negative_int("max_new_tokens", max_new_tokens)
        ids, stops, stop_ids = self._prepare(prompt, stop)
        g = Generation(ids, max_new_tokens, params, self._generator(seed), stop_ids, notify)
        (loop or self.decode_loop()).submit(g)
        return g, TextPieces(self.task, prompt, stops)

    def sample(
        self,
        prompts: str | list[str],
        num_samples: int = 1,
        max_new_tokens: int | None = None,
        *,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        use_cache: bool = True,
        compile: bool = False,
        **sampler: Any,
    ) -> list[str] | list[list[str]]:
        """`num_samples` completions of a prompt (a list of texts), or of each prompt of a list (a list
        per prompt), all decoded together in one batch (`batching.py`). Sample i is drawn with
        `seed + i`: the same text as `complete(prompt, seed=seed + i)`. Options as in `stream`
        (with `use_cache=False` or `compile=True` each sample is decoded on its own, as `stream` does)."""
        positive_int("num_samples", num_samples)
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not texts:
            raise UsageError("no prompts: give a prompt, or a list of at least one")
        seeds = [None if seed is None else seed + i for i in range(num_samples)]
        if not use_cache or compile:
            options = dict(stop=stop, use_cache=use_cache, compile=compile, **sampler)
            done = [[self.complete(p, max_new_tokens, seed=s, **options) for s in seeds] for p in texts]
        else:
            loop = DecodeLoop(self.model, max_batch=MAX_BATCH, max_queue=len(texts) * num_samples)
            jobs = [
                [self.submit(p, max_new_tokens, stop=stop, seed=s, loop=loop, **sampler) for s in seeds] for p in texts
            ]
            loop.run_until_done()
            self.generated_tokens = sum(len(g.tokens) for row in jobs for g, _ in row)
            for g, _ in (job for row in jobs for job in row):
                if g.error:
                    raise TinyLLMError(g.error)
            done = [[pieces.text(g.tokens) for g, pieces in row] for row in jobs]
        return done[0] if isinstance(prompts, str) else done


def load(run_dir: str | os.PathLike, *, checkpoint: str = "last", device: str = "cpu") -> Run:
    """Load a trained run: `tinyllm.load("runs/shakespeare").complete("to be")`.

    `checkpoint` is "last" (model.safetensors), "best" (best.safetensors, lowest test loss) or
    "step:N", the snapshot of step N (`snapshots.py`; a step with none is an error listing those there are).
    Only JSON and safetensors are read: loading never executes code from the run directory, and it
    needs no lock: a run that is still training can be loaded (its files are replaced atomically).
    """
    if checkpoint not in ("last", "best") and parse_step(checkpoint) is None:
        raise UsageError(f"checkpoint must be 'last', 'best' or 'step:N', got {checkpoint!r}")
    run = RunDirectory(run_dir)
    config = run.read_config()
    try:
        model_config = GPTConfig.from_dict(config["model"])
    except ConfigError as e:
        raise CheckpointError(f"{run.path / 'config.json'}: {e}") from None
    tokenizer = tokenizer_from_dict(run.read_tokenizer())
    padded = isinstance(tokenizer, HFTokenizer) and tokenizer.vocab_size < model_config.vocab_size  # GPT-2s pad theirs
    if tokenizer.vocab_size != model_config.vocab_size and not padded:
        raise CheckpointError(
            f"{run.path / 'tokenizer.json'} has {tokenizer.vocab_size} tokens but the model expects "
            f"{model_config.vocab_size}"
        )
    try:
        task = get_task(config["task"])(**config["task_options"])
    except (UsageError, TypeError) as e:
        raise CheckpointError(f"{run.path / 'config.json'}: {e}") from None
    task.tokenizer = tokenizer
    task.adopt(model_config)
    model = GPT(model_config)
    run.load_weights(model, checkpoint)
    model.to(resolve_device(device)).eval()
    return Run(run.path, model, task, config, checkpoint)


def evaluate(run: Run, data_path: str | None = None, batches: int = 100, seed: int = 0) -> dict[str, Any]:
    """Test loss (and train loss) of a loaded run on `batches` fixed random batches, plus task metrics.

    The same `mean_loss` as the trainer's evaluations, on more batches (and from another seed)."""
    task = run.task
    task.prepare(data_path, tokenizer=run.tokenizer)
    task_model = task.wrap(run.model).eval()
    block_size = run.model.config.block_size
    batch_size = run.config["train"].get("batch_size", 32)
    get_batch = lambda split, gen: task.get_batch(split, batch_size, block_size, gen)  # noqa: E731
    result: dict[str, Any] = {"task": task.name, "run": str(run.run_dir)}
    for split in ("train", "test"):
        result[f"{split}_loss"] = mean_loss(task_model, get_batch, split, batches, seed=seed, device=run.device)
    if task.loss_in_bits_per_char(result["test_loss"]) is not None:
        result["test_bits_per_char"] = task.loss_in_bits_per_char(result["test_loss"])
    result.update(task.metrics(task_model, run.device, full=True))
    result.update(run_baselines(run, prepared=True))
    return result


def run_baselines(run: Run, data_path: str | None = None, prepared: bool = False) -> dict[str, Any]:
    """The counting baselines of a text run (`baselines.py`), in nats per token and bits per character,
    and when the model passed each; for other tasks, why there are none. Counted when first asked
    for and kept in the run folder; where the run's text cannot be read now, the kept figures are
    given as they are (a note says they could not be checked against the text)."""
    from .baselines import counted_baselines, kept_baselines, passed_at
    from .plots import read_metrics

    task = run.task
    if not task.has_counting_baselines:
        return {"baselines": None, "baselines_note": f"{task.name} is not a text task: no counting baselines"}
    note = None
    try:
        if not prepared:
            task.prepare(data_path, tokenizer=run.tokenizer)
        tokens = task.train_tokens.numpy(), task.test_tokens.numpy()
        baselines = counted_baselines(run.run_dir, *tokens, run.tokenizer.vocab_size)
    except DataError as e:
        kept = kept_baselines(run.run_dir)
        if kept is None:
            return {"baselines": None, "baselines_note": f"no text to count on: {e}"}
        baselines, note = kept, f"as counted before; the text could not be read to check them: {e}"
    try:
        records = read_metrics(run.run_dir / "metrics.jsonl")
    except CheckpointError:  # an imported run has no metrics
        records = []
    bits = {name: task.loss_in_bits_per_char(loss) for name, loss in baselines.items()} if note is None else None
    return {
        "baselines": baselines,
        "baselines_bits_per_char": bits,
        "baselines_passed_at": passed_at(records, baselines),
        **({"baselines_note": note} if note else {}),
    }


def evaluate_lengths(run: Run, lengths: list[int], problems: int = 200) -> dict[str, Any]:
    """Exact match at each operand length (addition): `problems` random problems per length whose
    operands both have that many digits; a length longer than the run reads is "refused". Draws
    `accuracy_by_length.png` in the run folder."""
    from .plots import plot_accuracy_by_length

    task = run.task
    if not hasattr(task, "accuracy_by_length"):
        raise UsageError(f"--lengths is for the addition task, not {task.name}")
    accuracy = task.accuracy_by_length(task.wrap(run.model).eval(), lengths, run.device, problems)
    label = f"{run.model.config.positions} positions"
    plot_accuracy_by_length(run.run_dir / "accuracy_by_length.png", {label: accuracy}, task.digits)
    return {
        "task": task.name,
        "run": str(run.run_dir),
        "positions": run.model.config.positions,
        "trained_digits": task.digits,
        "longest": task.layout.longest,
        "problems_per_length": problems,
        "accuracy": {str(n): ("refused" if a is None else a) for n, a in accuracy.items()},
    }
