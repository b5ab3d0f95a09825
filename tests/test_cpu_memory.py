import json
import platform
import subprocess
import sys

import pytest

glibc_only = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)

# Trains the Shakespeare shape (3 blocks, 96 wide, 8 x 256 tokens: activations of 0.2-3 MB, above
# glibc's first mmap threshold) on random tokens in a fresh process, and prints the page faults per
# steady step and the losses. argv[1] == "default" leaves glibc's malloc as it is.
STEPS = r"""
import json, resource, sys
import torch
import tinyllm.runtime
from tinyllm import GPT, GPTConfig
from tinyllm.config import TrainConfig
from tinyllm.tasks.base import TaskModel
from tinyllm.training import Trainer

if sys.argv[1] == "default":
    tinyllm.runtime.keep_freed_memory = lambda: False
torch.manual_seed(0)
torch.set_num_threads(1)
config = GPTConfig(n_layer=3, n_head=4, n_embd=96, block_size=256, vocab_size=65)

def get_batch(split, generator):
    tokens = torch.randint(65, (8, 257), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]

train = TrainConfig(batch_size=8, max_iters=100, optimizer="muon", device="cpu", cpu_matmul="default")
trainer = Trainer(TaskModel(GPT(config)), get_batch, train, rows=8 * 256)
losses = [trainer.step()["train_loss"] for _ in range(12)]  # warm-up: the heap grows to one step's peak
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
losses += [trainer.step()["train_loss"] for _ in range(6)]
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 6
print(json.dumps({"faults_per_step": faults, "losses": losses}))
"""


def run_steps(malloc: str) -> dict:
    out = subprocess.run([sys.executable, "-c", STEPS, malloc], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


@glibc_only
def test_cpu_training_reuses_freed_memory_instead_of_faulting_in_fresh_pages():
    kept, default = run_steps("keep"), run_steps("default")
    # glibc's defaults hand a step's activations back to the system and fault them in again
    # (thousands of page faults a step); kept, a steady step touches only pages it already has
    assert kept["faults_per_step"] < 200
    assert default["faults_per_step"] > 5 * kept["faults_per_step"]
    assert kept["losses"] == default["losses"]  # the arithmetic is untouched: bit-identical


@glibc_only
def test_keep_freed_memory_takes_effect_on_glibc():
    script = "from tinyllm.cpu_memory import keep_freed_memory; print(keep_freed_memory(), keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]  # once per process, remembered
