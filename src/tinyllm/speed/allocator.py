"""Keeping freed memory for the next step: the C library's malloc, tuned for a CPU training loop.

On a GPU, PyTorch keeps the memory of freed tensors in its own caching allocator and hands it to
the next tensor of a similar size. On the CPU it has no such cache: every tensor is asked of the C
library's `malloc` and given back with `free` when it dies. A training step creates and frees the
same activations (hundreds of kilobytes to megabytes each) every step, so what matters is what
`free` does with them. glibc's malloc (Linux) by default

1. serves a block above its *mmap threshold* (128 KiB at first, raised as large blocks are freed,
   up to 32 MiB) with a fresh mapping from the operating system, unmapped again on `free`, and
2. gives the top of its heap back to the system when more than its *trim threshold* is free.

Either way the next step's tensors may land on fresh pages, and the first write to each 4 KiB page
is a page fault: the kernel stops the program, finds and zeroes a page, maps it. How often depends
on what the process did before (glibc moves its thresholds as blocks come and go). Measured on a
2-core Intel Xeon (family 6 model 167) by `benchmarks/micro.py malloc`: the Shakespeare model's
Trainer alone in a fresh process took 3,800-7,300 page faults a step and 14% more time per step;
the whole `tinyllm train shakespeare` command, 140,000-880,000 more page faults over 300 steps and
3% more time per step (1.03x); nanoGPT's baby shape in the command, no difference.

`keep_freed_memory()` sets both thresholds through `mallopt` so that blocks of up to 32 MiB come
from the heap and the heap is never trimmed: the memory a step frees is reused by the next, and the
page faults per step fall to a handful. The arithmetic is untouched (the same kernels on the same
numbers; the losses are bit-identical). The cost is that the process keeps the peak memory of one
step instead of returning it between steps: for these models, tens of megabytes.

PyTorch's CPU tuning guides reach the same end by preloading another allocator (jemalloc or
tcmalloc, `LD_PRELOAD=...`); this gets it with two calls and no dependency. Elsewhere (macOS,
Windows, a Linux on musl) there is no `mallopt` and nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>: free memory at the heap's top above this is returned to the system
M_MMAP_THRESHOLD = -3  # blocks above this size are mapped and unmapped on their own
LARGEST_HEAP_BLOCK = 32 << 20  # glibc refuses an mmap threshold above 32 MiB (half its largest heap)
NEVER_TRIM = 2**31 - 1  # the largest value mallopt takes (an int): 2 GiB, in effect never


@functools.cache
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks of up to 32 MiB for reuse (once per process).

    Returns whether it took effect: False where the C library has no `mallopt` or refuses.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # no C library by that name, or no mallopt in it
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # the order matters little, but both are needed: fixing the trim threshold alone also stops
    # glibc raising its mmap threshold, and every block above 128 KiB would be mapped afresh
    return bool(mallopt(M_MMAP_THRESHOLD, LARGEST_HEAP_BLOCK)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
