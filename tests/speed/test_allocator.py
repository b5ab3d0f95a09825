"""glibc's malloc told to keep freed memory for the next step (speed/allocator.py).

How many page faults a step then saves depends on the machine and on what else it is doing, so it
is a benchmark (`benchmarks/micro.py malloc`), not a test; here: that the setting takes effect, and
once per process."""

import platform
import subprocess
import sys

import pytest

glibc_only = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)


@glibc_only
def test_keep_freed_memory_takes_effect_on_glibc():
    script = "from tinyllm.speed.allocator import keep_freed_memory; print(keep_freed_memory(), keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]  # once per process, remembered
