"""Multi-process training through PyTorch's own DDP (torchrun), on the CPU with gloo."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tinyllm.snapshots import snapshot_path, snapshot_steps
from tinyllm.training import Trainer

from .conftest import TINY_CLI_FLAGS
from .ddp_worker import TRAIN, batches, make_model

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


@pytest.mark.slow
def test_one_ddp_step_equals_one_step_on_the_union_of_the_batches(tmp_path):
    proc = subprocess.run(
        [*TORCHRUN, str(Path(__file__).with_name("ddp_worker.py")), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name  # the ranks end with identical weights

    # one ordinary step on both ranks' batches together (rank r draws with seed + r)
    def union(split, generator):
        parts = [batches(split, torch.Generator().manual_seed(TRAIN.seed + r)) for r in (0, 1)]
        return tuple(torch.cat(t) for t in zip(*parts, strict=True))

    single = Trainer(make_model(), union, TRAIN)
    single.run(progress_bar=False)
    reference = single.model.gpt.state_dict()
    before = make_model().gpt.state_dict()
    assert not torch.equal(rank0["transformer.wte.weight"], before["transformer.wte.weight"])  # it did learn
    for name in rank0:
        torch.testing.assert_close(rank0[name], reference[name], rtol=0, atol=2e-6)


@pytest.mark.slow
def test_torchrun_trains_the_cli_and_only_rank_0_writes(tmp_path):
    out = tmp_path / "run"
    args = ["-m", "tinyllm", "train", "shakespeare", "--out", str(out), *TINY_CLI_FLAGS]
    args += ["--max-iters", "6", "--eval-interval", "3", "--device", "cpu"]
    proc = subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("training shakespeare") == 1  # one log, from rank 0
    assert "2 processes (DDP)" in proc.stdout
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in lines] == list(range(1, 7))  # one line per step, not one per rank
    # resume works under torchrun too
    args[args.index("6")] = "9"
    proc = subprocess.run([*TORCHRUN, *args, "--resume"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [json.loads(line)["iter"] for line in (out / "metrics.jsonl").read_text().splitlines()] == list(range(1, 10))
    # rank 0 keeps the snapshots, continuing its plan after the resume, and the last step
    steps = snapshot_steps(out)
    assert steps[0] == 1 and steps[-1] == 9 and all(load_file(snapshot_path(out, s)) for s in steps)
