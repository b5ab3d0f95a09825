"""What the snapshots of a run show, step by step: the numbers behind lesson 14 ("Watching a model learn").

    python benchmarks/snapshot_views.py runs/shakespeare [--pictures DIR] [--out FILE]
    python benchmarks/snapshot_views.py runs/modadd --pictures docs/lessons/img
    python benchmarks/snapshot_views.py runs/addition --pictures docs/lessons/img

Loads every snapshot of the run (`tinyllm.load(run, checkpoint="step:N")`) and measures, with the
functions the page's views use (`tinyllm.web.views`):

- text tasks: each head's *previous-token score* (its mean attention on the token just before the
  query, over a 256-token stretch of the test text), and the logit lens's accuracy at each layer
  (how often that layer's top token is the real next token);
- modadd: the share of the number embeddings' Fourier spectrum in its 5 tallest frequencies, beside
  the test accuracy logged nearest that step;
- addition: the accuracy of each answer digit (the page's per-digit view).

Prints one JSON object; with --pictures, draws a strip of the same view at four steps and the
measures against the step (PNG files named watch_<task>_*.png).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name, report, run_main  # noqa: E402

import tinyllm  # noqa: E402
from tinyllm.inspection import logit_lens, trace  # noqa: E402
from tinyllm.plots import read_metrics  # noqa: E402
from tinyllm.snapshots import snapshot_steps  # noqa: E402
from tinyllm.web.views import embeddings  # noqa: E402


def text_measures(run: tinyllm.Run, text_ids: list[int]) -> dict:
    idx = torch.tensor([text_ids])
    with torch.no_grad():
        traced = trace(run.model, idx)
        _, top = logit_lens(run.model, traced["residuals"])
    attention = traced["attention"]  # (L, H, T, T)
    T = idx.shape[1]
    previous = attention[:, :, torch.arange(1, T), torch.arange(0, T - 1)].mean(-1)  # (L, H)
    truth = idx[0, 1:]
    lens = (top[:, :-1, 0] == truth).float().mean(-1)  # (L + 1,)
    current = (top[0, :, 0] == idx[0]).float().mean()  # the embeddings' row: the token it stands on
    return {
        "previous_token": previous.tolist(),
        "lens_accuracy": lens.tolist(),
        "lens_embeddings_says_current_token": current.item(),
        "attention": attention,
    }


def accuracy_near(records: list[dict], step: int, key: str) -> float | None:
    evals = [r for r in records if key in r]
    if not evals:
        return None
    return min(evals, key=lambda r: abs(r["iter"] - step))[key]


def measure(run_dir: Path) -> tuple[dict, dict]:
    steps = snapshot_steps(run_dir)
    if not steps:
        sys.exit(f"error: {run_dir} has no snapshots (train it with --snapshots N)")
    base = tinyllm.load(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    result: dict = {"task": base.task.name, "steps": steps, "per_step": []}
    pictures: dict = {}
    if base.task.continues_text:
        base.task.prepare(None, tokenizer=base.tokenizer)
        text = base.task.test_tokens[1000 : 1000 + min(256, base.model.config.block_size)].tolist()
        pictures["text"] = [base.tokenizer.decode([i]) for i in text]
    for step in steps:
        run = base.at_step(step)
        row: dict = {"step": step}
        if base.task.continues_text:
            measures = text_measures(run, text)
            pictures.setdefault("attention", {})[step] = measures.pop("attention")
            row.update(measures)
        view = embeddings(run)
        pictures.setdefault("embeddings", {})[step] = (view["labels"], view["points"])
        for task_view in view["views"]:
            row[task_view["name"]] = task_view["y"]
            pictures.setdefault(task_view["name"], {})[step] = (task_view["x"], task_view["y"])
            if task_view["name"] == "fourier":
                norms = sorted(task_view["y"][1:], reverse=True)  # frequency 0 is the mean: left out
                row["fourier_top5_share"] = round(sum(norms[:5]) / sum(norms), 4)
        nearby = [r["train_loss"] for r in records if abs(r["iter"] - step) <= max(2, step // 20) and "train_loss" in r]
        row["train_loss_near"] = round(sum(nearby) / len(nearby), 4)  # the mean over steps within 5%
        for key in ("accuracy", "test_loss"):
            near = accuracy_near(records, step, key)
            if near is not None:
                row[f"{key}_near"] = round(near, 4)
        result["per_step"].append(row)
    return result, pictures


def four_steps(steps: list[int]) -> list[int]:
    """Four snapshots spread in log steps: the first, two between, the last."""
    picks = [steps[0], steps[len(steps) // 3], steps[(2 * len(steps)) // 3], steps[-1]]
    return sorted(set(picks))


def draw(result: dict, pictures: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    task, steps, rows = result["task"], result["steps"], result["per_step"]
    picks = four_steps(steps)
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        written.append(str(folder / name))

    def bar_strip(view: dict, xlabel: str, name: str, **bars) -> None:
        """A task view's bar chart at the four picked steps, side by side."""
        fig, axes = plt.subplots(1, len(picks), figsize=(3.2 * len(picks), 2.8), sharey=True)
        for ax, step in zip(axes, picks, strict=True):
            ax.bar(*view[step], **bars)
            ax.set(title=f"step {step}", xlabel=xlabel)
        save(fig, name)

    if "attention" in pictures:
        final = rows[-1]["previous_token"]
        layer, head = max(
            ((l, h) for l in range(len(final)) for h in range(len(final[0]))), key=lambda lh: final[lh[0]][lh[1]]
        )
        result["previous_token_head"] = {"layer": layer + 1, "head": head + 1}
        n = 32
        fig, axes = plt.subplots(1, len(picks), figsize=(3.2 * len(picks), 3.4))
        for ax, step in zip(axes, picks, strict=True):
            ax.imshow(pictures["attention"][step][layer, head, :n, :n].numpy(), cmap="Blues", vmin=0, vmax=1)
            ax.set_title(f"step {step}")
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"layer {layer + 1} head {head + 1}: attention over the first {n} tokens (rows: query)")
        save(fig, f"watch_{task}_attention.png")
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
        for l in range(len(final)):
            for h in range(len(final[0])):
                style = dict(marker=".", linestyle=("-", "--", ":", "-.")[l % 4], color=f"C{h}")
                left.plot(steps, [r["previous_token"][l][h] for r in rows], label=f"L{l + 1} H{h + 1}", **style)
        left.set(xscale="log", xlabel="step", ylabel="mean attention on the previous token", title="every head")
        left.legend(fontsize=7, ncol=2)
        for l in range(len(rows[0]["lens_accuracy"])):
            name = "embeddings" if l == 0 else f"block {l}"
            right.plot(steps, [r["lens_accuracy"][l] for r in rows], marker=".", label=name)
        right.set(xscale="log", xlabel="step", ylabel="top token = the real next token", title="logit lens, by layer")
        right.legend(fontsize=8)
        save(fig, f"watch_{task}_scores.png")
    if "fourier" in pictures:
        bar_strip(pictures["fourier"], "frequency", f"watch_{task}_fourier.png", width=1.0)
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        ax.plot(
            steps, [r["fourier_top5_share"] for r in rows], marker="o", label="top-5 frequencies' share of the spectrum"
        )
        ax.plot(steps, [r.get("accuracy_near") for r in rows], marker="s", label="test accuracy (nearest evaluation)")
        ax.set(xscale="log", xlabel="step (snapshots)", ylim=(0, 1.02))
        ax.legend(fontsize=8)
        save(fig, f"watch_{task}_grokking.png")
    if "digit_accuracy" in pictures:
        bar_strip(pictures["digit_accuracy"], "answer digit (1 = units)", f"watch_{task}_digits.png")
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        digits = len(rows[0]["digit_accuracy"])
        for d in range(digits):
            color = plt.cm.viridis(d / max(1, digits - 1))  # units (dark) to the highest digit (yellow)
            ax.plot(steps, [r["digit_accuracy"][d] for r in rows], marker=".", color=color, label=f"digit {d + 1}")
        ax.set(xscale="log", xlabel="step (snapshots)", ylabel="accuracy", ylim=(0, 1.02))
        ax.legend(fontsize=7, ncol=2)
        save(fig, f"watch_{task}_digits_by_step.png")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--pictures", type=Path, help="draw the strips and curves into this folder")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    result, pictures = measure(args.run)
    if args.pictures:
        result["pictures"] = draw(result, pictures, args.pictures)
    for row in result["per_step"]:  # rounded for reading
        for key in ("previous_token", "lens_accuracy", "digit_accuracy", "fourier"):
            if key in row:
                row[key] = [[round(v, 3) for v in r] if isinstance(r, list) else round(r, 3) for r in row[key]]
        if "lens_embeddings_says_current_token" in row:
            row["lens_embeddings_says_current_token"] = round(row["lens_embeddings_says_current_token"], 3)
    report(
        {
            "benchmark": "snapshot_views",
            "cpu": cpu_name(),
            "date": date.today().isoformat(),
            "run": str(args.run),
            **result,
        },
        args.out,
    )


if __name__ == "__main__":
    run_main(main)
