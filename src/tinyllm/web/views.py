"""The numbers behind each view of the page, as JSON-ready dicts (the page draws exactly these).

- `inspect_prompt`: tokens, every head's attention, the logit lens and the sampler's stages.
- `embeddings`: the token embeddings in 2-D, and the task's own views (`Task.page_views`).
- `baselines`: counting models of a text run's own split, for lines on the loss chart.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from ..errors import UsageError
from ..inference import Run, run_baselines
from ..inspection import STAGES, logit_lens, pca_2d, sampler_stages, trace
from ..sampling import SamplingParams

CANDIDATES = 12  # next-token candidates shown per position
MAX_INSPECT_TOKENS = 256  # attention is T x T per head: past this the page would carry megabytes


def _r(t: torch.Tensor, digits: int = 4) -> list:
    """A tensor as nested lists of rounded floats (smaller JSON, same picture)."""
    return torch.round(t.float(), decimals=digits).tolist()


def token_texts(run: Run, ids: list[int]) -> list[str]:
    return [run.tokenizer.decode([i]) for i in ids]


def inspect_prompt(run: Run, text: str, params: SamplingParams) -> dict[str, Any]:
    """Everything the Next token, Attention and Logit lens views show for `text`."""
    if not text:
        raise UsageError("the prompt is empty: give at least one character")
    ids = run.task.encode_prompt(text)
    block_size = run.model.config.block_size
    limit = min(block_size, MAX_INSPECT_TOKENS)
    dropped = 0
    if len(ids) > limit:
        if not run.task.continues_text:
            raise UsageError(f"the prompt is {len(ids)} tokens; inspecting looks at {limit} at most: shorten it")
        dropped, ids = len(ids) - limit, ids[-limit:]  # the model's own window: the most recent tokens
    idx = torch.tensor([ids], device=run.device)
    traced = trace(run.model, idx)
    lens_probs, lens_ids = logit_lens(run.model, traced["residuals"])
    n_layer = run.model.config.n_layer
    return {
        "dropped": dropped,  # tokens before the window (a text longer than the model's context)
        "tokens": token_texts(run, ids),
        "ids": ids,
        "attention": _r(traced["attention"]),  # layer x head x query x key
        "logit_lens": {
            "layers": ["embeddings"] + [f"block {i + 1}" for i in range(n_layer)],
            "top_token": [token_texts(run, row) for row in lens_ids[..., 0].tolist()],
            "top_prob": _r(lens_probs[..., 0]),
        },
        "stages": {"names": list(STAGES), "positions": _stages(run, traced["logits"], idx[0], params)},
    }


def _stages(run: Run, logits: torch.Tensor, ids: torch.Tensor, params: SamplingParams) -> list[dict[str, Any]]:
    """For each position: the candidates for the next token and their probability at each stage."""
    positions = []
    for t in range(len(ids)):
        stages = torch.stack(sampler_stages(logits[t], ids[: t + 1], params))  # (stages, V)
        top = stages.max(dim=0).values.topk(min(CANDIDATES, stages.shape[1])).indices
        candidates = [
            {"id": int(i), "token": run.tokenizer.decode([int(i)]), "probs": _r(stages[:, i], 5)} for i in top.tolist()
        ]
        positions.append({"candidates": candidates, "kept": [int((s > 0).sum()) for s in stages]})
    return positions


@torch.no_grad()
def embeddings(run: Run) -> dict[str, Any]:
    """The token embeddings projected to 2-D, and the task's own picture (if it has one)."""
    wte = run.model.transformer.wte.weight.detach().cpu()
    vocab = run.tokenizer.vocab_size
    result: dict[str, Any] = {
        "labels": token_texts(run, list(range(vocab))),
        "points": _r(pca_2d(wte[:vocab]), 3),
    }
    result["views"] = [
        {**view, "y": _r(torch.tensor(view["y"]), 4)} for view in run.task.page_views(run.model, run.device)
    ]
    return result


_counting = threading.Lock()  # one count at a time: a run's task is prepared in place


def baselines(run: Run) -> dict[str, Any]:
    """The counting baselines of a text run, and when the model passed each (`inference.run_baselines`)."""
    with _counting:
        return run_baselines(run)
