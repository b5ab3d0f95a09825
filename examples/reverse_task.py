"""A task of your own in a few dozen lines: reverse a word, scored on the answer only.

    python examples/reverse_task.py          # trains for ~30 s, then tries a few words

A task = data + tokenizer + model defaults + its own loss. This one shows each piece.
"""

import torch
import torch.nn.functional as F

import tinyllm
from tinyllm.runs import train
from tinyllm.tasks import Task, TaskModel, register
from tinyllm.tokenizer import CharTokenizer

LENGTH = 6  # letters per word


class ReverseModel(TaskModel):
    """The loss: cross-entropy on the reversed word only (the prompt is random: don't score it)."""

    def loss(self, batch):
        x, y = batch
        logits = self.gpt(x)[:, -LENGTH:]  # predictions made after the '|'
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y[:, -LENGTH:].reshape(-1))


class Reverse(Task):
    name = "reverse"
    description = "reverse a word of 6 letters"
    model_class = ReverseModel
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
        return seq[:, :-1], seq[:, 1:]


register(Reverse)

if __name__ == "__main__":
    train("reverse", out_dir="runs/reverse", overwrite=True)
    run = tinyllm.load("runs/reverse")
    for word in ("abcdef", "faceda", "bedbad"):
        print(word, "->", run.complete(word + "|", temperature=0))
