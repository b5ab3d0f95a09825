"""What the benchmark scripts share: the CPU's name for every figure, how a result is reported, how
`tinyllm` is run, and how recipes alternate."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name, family and model (AMD: family 25 is Zen 3/4, 26 is Zen 5), from /proc/cpuinfo."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    info: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return f"{info.get('model name', '?')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"


def report(result: dict, out: Path | None = None) -> None:
    """Print the result as JSON, and also write it to `out` (the --out file) when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")


def run_quietly(command: list[str], **options) -> str:
    """Run `command` in its own process; its standard output. If it fails, exit with its last line of
    error (tinyllm's own one-line message, such as a missing data file), not a traceback."""
    done = subprocess.run(command, capture_output=True, text=True, **options)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or [f"exit status {done.returncode}"]
        program = " ".join(Path(part).name for part in command[:3])  # `python -m tinyllm`, `python train.py ...`
        sys.exit(f"error: {program} failed: {lines[-1]}")
    return done.stdout


def run_main(main: Callable[[], None]) -> None:
    """Run a script's `main()`; tinyllm's own errors (a missing data file, say) end it in one line."""
    from tinyllm.errors import TinyLLMError

    try:
        main()
    except TinyLLMError as e:
        sys.exit(f"error: {e}")


def tinyllm(*args: str, **options) -> str:
    """Run the `tinyllm` command in its own process (as a user would); its standard output."""
    return run_quietly([sys.executable, "-m", "tinyllm", *args], **options)


def alternate(seeds: list[int], names: list[str], run: Callable[[str, int, Path], dict]) -> list[dict]:
    """`run(name, seed, folder)` for every seed and name, names alternating within each seed (A B C,
    A B C, ...) so that a noisy spell of the machine hits them all; run directories go to a folder
    deleted at the end. Each result is printed to stderr as it comes."""
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            for name in names:
                results.append(run(name, seed, Path(folder)))
                print(json.dumps(results[-1]), file=sys.stderr)
    return results
