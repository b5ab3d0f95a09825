"""The run directory has one writer: a training holds a lock that a second training cannot take."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tinyllm.errors import UsageError
from tinyllm.rundir import RunDirectory, RunLockedError

from .conftest import TINY_CLI_FLAGS


def start_training(run, *flags):
    command = [sys.executable, "-m", "tinyllm", "train", "shakespeare", "--out", str(run), *TINY_CLI_FLAGS, *flags]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_metrics(run, proc, lines=1, timeout=60):
    """Until the training has logged `lines` steps (so it holds the lock and is training)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = run / "metrics.jsonl"
        if path.exists() and len(path.read_text().splitlines()) >= lines:
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.1)
    raise AssertionError("the training never started")


def test_a_second_writer_is_refused_in_the_same_process(tmp_path):
    first, second = RunDirectory(tmp_path / "run"), RunDirectory(tmp_path / "run")
    first.lock()
    with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
        second.lock()
    first.unlock()
    second.lock()  # free again once the first lets go
    second.unlock()


def test_writing_without_the_lock_is_a_bug(tmp_path):
    with pytest.raises(RuntimeError, match="lock"):
        RunDirectory(tmp_path).start_fresh()


@pytest.mark.slow
def test_a_second_training_is_refused_and_the_first_runs_on(tmp_path):
    run = tmp_path / "run"
    first = start_training(run, "--max-iters", "100000", "--max-time", "5m", "--eval-interval", "50")
    try:
        wait_for_metrics(run, first, lines=5)
        config_before = (run / "config.json").read_bytes()
        seconds = [start_training(run, "--max-iters", "10", *extra) for extra in ([], ["--resume"], ["--overwrite"])]
        for second in seconds:  # all three at once: each is refused
            _, err = second.communicate(timeout=60)
            lines = err.strip().splitlines()
            assert second.returncode == 1, err
            assert len(lines) == 1 and f"process {first.pid}" in lines[0] and "Traceback" not in err, err
        assert (run / "config.json").read_bytes() == config_before  # touched nothing
        assert first.poll() is None  # still training
        first.send_signal(signal.SIGINT)  # Ctrl-C: checkpoint and stop
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err
    iters = [json.loads(line)["iter"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert iters == list(range(1, iters[-1] + 1))  # the first run's log is continuous to its end
    assert f"interrupted at iteration {iters[-1]}" in err


def test_sigkill_leaves_no_stale_lock(tmp_path):
    run = tmp_path / "run"
    proc = start_training(run, "--max-iters", "100000", "--max-time", "60s")
    try:
        wait_for_metrics(run, proc)
        with pytest.raises(RunLockedError):
            RunDirectory(run).lock()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    after = RunDirectory(run)
    after.lock()  # the kernel released the dead process's lock
    after.unlock()


def test_new_run_refuses_an_existing_one_without_overwrite(tmp_path, tiny_run):
    from tinyllm.rundir import check_new_run

    with pytest.raises(UsageError, match="--overwrite"):
        check_new_run(RunDirectory(tiny_run), overwrite=False)
    check_new_run(RunDirectory(tiny_run), overwrite=True)
    check_new_run(RunDirectory(tmp_path / "empty"), overwrite=False)
