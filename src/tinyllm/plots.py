"""Loss curves as PNG files, drawn from a run's metrics.jsonl.

Written at an evaluation (at most once a minute of training: `runs.PLOT_EVERY_S`) and at the end of
training; `tinyllm plot RUN` redraws them:
- train_loss.png: the loss of every training batch (light) and the evaluated train loss (dark)
- test_loss.png: the test loss at each evaluation, with the train loss for comparison
- lr.png: the learning-rate schedule
- one more PNG per task metric, e.g. accuracy.png, with train and test where both are logged

`tinyllm plot RUN RUN ... --metric NAME --x step|time|epoch|tokens` draws one metric of several runs
on one chart instead (`plot_runs`): how the lessons compare recipes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import CheckpointError, UsageError

STANDARD_KEYS = {"iter", "train_loss", "eval_train_loss", "test_loss", "lr", "tokens_per_s", "elapsed_s", "epoch"}


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of metrics.jsonl; a line cut short by a crash (the last one) is skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CheckpointError(f"missing file: {path}") from None
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise CheckpointError(f"{path} line {i + 1} is not JSON") from None
    return records


def _figure(title: str, ylabel: str):
    import matplotlib

    matplotlib.use("Agg")  # draw to files; no window, no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.set_title(title)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return plt, fig, ax


def _save(plt, fig, ax, path: Path) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)  # atomic: a reader never sees half a PNG


def plot_run(run_dir: Path, title: str = "") -> list[Path]:
    """Redraw every plot of `run_dir` from its metrics.jsonl; returns the files written."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    if not records:
        raise CheckpointError(f"{run_dir / 'metrics.jsonl'} holds no metrics yet")
    evals = [r for r in records if "test_loss" in r]
    prefix = f"{title}: " if title else ""
    written = []

    plt, fig, ax = _figure(f"{prefix}train loss", "cross-entropy loss")
    ax.plot([r["iter"] for r in records], [r["train_loss"] for r in records], alpha=0.3, lw=0.8, label="batch")
    if evals:
        ax.plot([r["iter"] for r in evals], [r["eval_train_loss"] for r in evals], "o-", ms=3, label="evaluated")
    _save(plt, fig, ax, run_dir / "train_loss.png")
    written.append(run_dir / "train_loss.png")

    plt, fig, ax = _figure(f"{prefix}test loss", "cross-entropy loss")
    if evals:
        ax.plot([r["iter"] for r in evals], [r["test_loss"] for r in evals], "o-", ms=3, label="test")
        ax.plot([r["iter"] for r in evals], [r["eval_train_loss"] for r in evals], "--", alpha=0.6, label="train")
    _draw_baselines(ax, run_dir)
    _save(plt, fig, ax, run_dir / "test_loss.png")
    written.append(run_dir / "test_loss.png")

    plt, fig, ax = _figure(f"{prefix}learning rate", "learning rate")
    ax.plot([r["iter"] for r in records], [r["lr"] for r in records])
    _save(plt, fig, ax, run_dir / "lr.png")
    written.append(run_dir / "lr.png")

    # task metrics: "accuracy" and "train_accuracy" share accuracy.png
    extra = sorted({k for r in evals for k in r} - STANDARD_KEYS)
    for name in [k for k in extra if not k.startswith("train_")]:
        plt, fig, ax = _figure(f"{prefix}{name}", name)
        for key, label in ((name, "test"), (f"train_{name}", "train")):
            points = [(r["iter"], r[key]) for r in evals if key in r]
            if points:
                ax.plot(*zip(*points, strict=True), "o-", ms=3, label=label)
        _save(plt, fig, ax, run_dir / f"{name}.png")
        written.append(run_dir / f"{name}.png")
    return written


def _draw_baselines(ax, run_dir: Path) -> None:
    """The counting baselines as labelled horizontal lines, where `baselines.json` holds them (only
    read here, never computed: plots are drawn inside a training's time budget)."""
    try:
        baselines = json.loads((run_dir / "baselines.json").read_text(encoding="utf-8"))["baselines"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    for name, loss in baselines.items():
        ax.axhline(loss, color="0.6", lw=0.8, ls=":")
        ax.annotate(
            name, (1.0, loss), xycoords=("axes fraction", "data"), fontsize=7, color="0.4", ha="right", va="bottom"
        )


def plot_accuracy_by_length(
    path: Path, curves: dict[str, dict[int, float | None]], trained: int, title: str = ""
) -> Path:
    """Exact-match accuracy against operand length, one line per run (`curves`: label -> length ->
    accuracy, None where the run refuses the length); lengths up to `trained` are shaded."""
    plt, fig, ax = _figure(title or "accuracy by operand length", "exact-match accuracy")
    ax.set_xlabel("digits per operand")
    ax.axvspan(0.5, trained + 0.5, color="0.9", label=f"trained (1-{trained} digits)")
    for label, accuracy in curves.items():
        lengths = sorted(accuracy)
        points = [(n, accuracy[n]) for n in lengths if accuracy[n] is not None]
        line = ax.plot(*zip(*points, strict=True), "o-", ms=3, label=label) if points else None
        refused = [n for n in lengths if accuracy[n] is None]
        if refused:
            color = line[0].get_color() if line else None
            ax.plot(refused, [0] * len(refused), "x", color=color, label=f"{label}: refused")
    ax.set_ylim(-0.03, 1.03)
    _save(plt, fig, ax, Path(path))
    return Path(path)


# --x: what the horizontal axis counts, and the metrics.jsonl key it reads (tokens: computed)
X_AXES = {"step": "iter", "time": "elapsed_s", "epoch": "epoch", "tokens": "tokens"}
X_LABELS = {
    "step": "optimizer step",
    "time": "seconds of training",
    "epoch": "epochs (passes over the training text)",
    "tokens": "training tokens (sequences x context)",
}


def _run_records(run_dir: Path) -> list[dict[str, Any]]:
    """A run's metrics records, each with `tokens` (optimizer steps x sequences x context) added."""
    if not (run_dir / "config.json").is_file():
        raise UsageError(f"{run_dir} is not a tinyllm run (no config.json)")
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    try:
        records = read_metrics(run_dir / "metrics.jsonl")
    except CheckpointError as e:
        raise UsageError(str(e)) from None
    if not records:
        raise UsageError(f"{run_dir} has no metrics yet")
    train, model = config.get("train", {}), config.get("model", {})
    per_step = train.get("batch_size", 1) * train.get("grad_accum", 1) * model.get("block_size", 1)
    return [{**r, "tokens": r["iter"] * per_step} for r in records]


def plot_runs(runs: list[Path], metric: str = "test_loss", x: str = "step", out: Path | None = None) -> Path:
    """Draw `metric` of every run against `x` (step, time, epoch or tokens) on one chart, one line
    per run, labelled by its folder's name; returns the PNG written (default METRIC_by_X.png)."""
    if x not in X_AXES:
        raise UsageError(f"--x must be one of {', '.join(X_AXES)}, got {x!r}")
    curves = {}
    for run in map(Path, runs):
        records = _run_records(run)
        if not any(metric in r for r in records):
            there = sorted({k for r in records for k in r} - {"iter", "tokens", "elapsed_s", "epoch"})
            raise UsageError(f"{run} has no metric {metric!r}; it has: {', '.join(there)}")
        if not any(X_AXES[x] in r for r in records):
            raise UsageError(f"{run} has no {x} axis: its task draws fresh problems, so it has no epochs")
        curves[run.name] = [(r[X_AXES[x]], r[metric]) for r in records if metric in r and X_AXES[x] in r]
    plt, fig, ax = _figure(metric, metric)
    ax.set_xlabel(X_LABELS[x])
    dots = sum(len(points) for points in curves.values()) < 60 * len(curves)  # evaluations: few points
    for label, points in curves.items():
        ax.plot(*zip(*points, strict=True), "o-" if dots else "-", ms=3, lw=1.2, label=label)
    out = Path(out) if out is not None else Path(f"{metric}_by_{x}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    _save(plt, fig, ax, out)
    return out
