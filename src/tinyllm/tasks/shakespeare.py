"""shakespeare: a character-level model of tiny Shakespeare -- the original tinyLLM example.

1.1 MB of Shakespeare's plays; the model reads 256 characters and predicts the next one. The text
is lowercased by default, as in the original model: 39 characters instead of 65 make an easier
first model (`--no-lowercase` keeps the case). The last 10% of the text is the test set.

It is the `text` task on one known corpus: found (and checked against its SHA-256) by `data.py`
instead of given with --data.
"""

from __future__ import annotations

from ..data import TINY_SHAKESPEARE, find_corpus, read_text
from .text import LOWERCASE_OPTIONS, TRAIN_FRACTION, Text


class Shakespeare(Text):
    name = "shakespeare"
    example_prompt = "to be"  # the page's first prompt
    description = "character-level tiny Shakespeare (3 blocks, 256 characters of context, lowercase)"
    options = (*LOWERCASE_OPTIONS, TRAIN_FRACTION)
    # Chosen by measurement: the best test loss in 5 minutes on a 2-core laptop CPU. Narrower and
    # smaller batches won: in a fixed time, more optimizer steps beat a bigger model (docs/lessons/12-training-in-a-budget.md).
    model_defaults = dict(
        block_size=256,  # the original tinyLLM's context: a few lines of verse
        n_layer=3,  # the original tinyLLM's depth
        n_head=4,  # 24 dimensions per head
        n_embd=96,  # 128 and 192 were worse in 5 minutes: fewer steps
        dropout=0.0,  # 5 minutes is far too short to overfit 1 MB of text
    )
    train_defaults = dict(
        optimizer="muon",  # 5 min, cased, 3 seeds: 1.60 against AdamW's 1.76 (docs/log.md, time_to_quality.py)
        schedule="wsd",  # the peak rate for 80% of the budget, then down to min_lr
        batch_size=8,  # 8 x 256 tokens a step; batch 16 and 32 lost to more, noisier steps
        lr=3e-3,  # high for a tiny model; 5e-3 was no better
        muon_lr_scale=1.5,  # Muon's rate 4.5e-3: 1,500 steps 0.02 better than 1x, 0.67x worse (docs/log.md)
        min_lr=3e-4,  # the cosine ends at a tenth of the peak
        ema_decay=0.995,  # end on the weights' average over the last ~200 steps: beat 0.98 with 4 seeds (docs/log.md)
        warmup_iters=50,  # the first steps are noisy; 50 is about 1% of the run
        max_time=300.0,  # the five-minute model; the schedule is fitted to it
        max_iters=None,  # time, not steps, is the budget
        eval_interval=250,  # about 25 evaluations per run, each a point on the curves
        eval_iters=20,  # 20 x 8 x 256 = 41k tokens per split: a stable estimate, ~1 s
    )

    def __init__(self, lowercase: bool = True, train_fraction: float = 1.0) -> None:
        super().__init__(lowercase=lowercase, train_fraction=train_fraction)
        self.task_options = {"lowercase": lowercase}  # the corpus is known: only these are options
        if train_fraction != 1:
            self.task_options["train_fraction"] = train_fraction

    def read_text(self, data_path: str | None) -> str:
        return read_text(find_corpus(TINY_SHAKESPEARE, data_path))
