"""A task of your own in a few dozen lines: reverse a word, scored on the answer only.

    python examples/reverse_task.py          # trains for ~30 s, then tries a few words

A task = data + tokenizer + model defaults + its own loss. This one shows each piece. The loss is
the task model's cross-entropy on the targets the batch scores: the prompt is random, so
`get_batch` marks its targets IGNORE (-1) and only the reversed word is scored.
"""

import torch

import tinyllm
from tinyllm.tasks import Task, register, score_last
from tinyllm.tokenizer import CharTokenizer

LENGTH = 6  # letters per word


class Reverse(Task):
    name = "reverse"
    description = "reverse a word of 6 letters"
    model_defaults = dict(block_size=2 * LENGTH, n_layer=2, n_head=4, n_embd=64)
    train_defaults = dict(batch_size=64, lr=3e-3, max_iters=600, max_time=None, eval_interval=100, eval_iters=4)
    default_max_new_tokens = LENGTH
    continues_text = False  # print only the answer, not the prompt

    def prepare(self, data_path=None, tokenizer=None):
        self.tokenizer = CharTokenizer("abcdef|")  # ids: letters 0-5, '|' 6

    def get_batch(self, split, batch_size, block_size, generator):
        # the generator is seeded per split by the trainer; any word may appear in either split here
        words = torch.randint(6, (batch_size, LENGTH), generator=generator)
        bar = torch.full((batch_size, 1), 6)
        seq = torch.cat([words, bar, words.flip(1)], dim=1)  # "abcdef|fedcba"
        return seq[:, :-1], score_last(seq[:, 1:], LENGTH)  # scored: the predictions made after '|'


register(Reverse)

if __name__ == "__main__":
    tinyllm.train("reverse", out_dir="runs/reverse", overwrite=True)
    run = tinyllm.load("runs/reverse")
    for word in ("abcdef", "faceda", "bedbad"):
        print(word, "->", run.complete(word + "|", temperature=0))
