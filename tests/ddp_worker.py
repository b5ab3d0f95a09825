"""Run by test_distributed.py under torchrun: one DDP training step on a tiny GPT, then each rank
saves its weights, so the test can check that ranks agree and match a single-process step."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from tinyllm import GPT, GPTConfig
from tinyllm.config import TrainConfig
from tinyllm.runtime import Runtime, process_group
from tinyllm.tasks import TaskModel
from tinyllm.training import Trainer

CONFIG = GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16)
TRAIN = TrainConfig(lr=1e-2, warmup_iters=0, max_iters=1, eval_interval=1, eval_iters=1, device="cpu", seed=5)


def batches(split, generator):
    x = torch.randint(13, (4, 8), generator=generator)
    return x, (x + 1) % 13


def make_model() -> TaskModel:
    torch.manual_seed(0)
    return TaskModel(GPT(CONFIG))


if __name__ == "__main__":
    out = Path(sys.argv[1])
    with process_group(TRAIN.device) as dist:  # joins the torchrun job, and leaves it at the end
        assert dist.enabled and dist.world_size == 2
        trainer = Trainer(make_model(), batches, TRAIN, runtime=Runtime(TRAIN, dist))
        trainer.run(progress_bar=False)
        state = {k: v.contiguous() for k, v in trainer.model.gpt.state_dict().items() if k != "lm_head.weight"}
        save_file(state, out / f"rank{dist.rank}.safetensors")
        del trainer  # its DDP wrapper holds the process group
