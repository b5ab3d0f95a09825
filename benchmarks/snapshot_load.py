"""How quickly `tinyllm serve` answers for a snapshot along the training: the step slider's latency.

    python benchmarks/snapshot_load.py runs/shakespeare [--prompt TEXT] [--out FILE]

Starts `tinyllm serve RUN` in its own process (twice), and times, from this process, every request
the slider makes when it moves to a step: `POST /api/runs/NAME/inspect` with `step` and
`GET /api/runs/NAME/embeddings?step=N`, for every snapshot of the run. Each request is timed for a
snapshot *not yet loaded* (the first request that names it: the server reads the file and builds
the model) and for one *already loaded* (the same request again). The first server is asked
inspect first (cold) and then embeddings (warm); the second, embeddings first, then inspect. The
prompt is about what the page inspects after a generation: 100 characters. Prints one JSON object:
milliseconds per request kind (median, p95, max, over the snapshots) and the CPU.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import date
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name, report, run_main  # noqa: E402

PROMPT = "first citizen:\nbefore we proceed any further, hear me speak.\n\nall:\nspeak, speak.\n\nfirst citizen:\nyou"


def request(base: str, path: str, body: dict | None = None) -> float:
    """Milliseconds for one request, answered 200 (anything else stops the benchmark)."""
    data = None if body is None else json.dumps(body).encode()
    t0 = time.perf_counter()
    with urllib.request.urlopen(
        urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"}), timeout=60
    ) as response:
        response.read()
        assert response.status == 200
    return 1000 * (time.perf_counter() - t0)


def serve(run: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "tinyllm", "serve", str(run), "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    server.stdout.readline()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{base}/api/runs", timeout=5).read()
            return server, base
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 1),
        "p95": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 1),
        "max": round(ordered[-1], 1),
        "n": len(ordered),
    }


def measure(run: Path, prompt: str, inspect_first: bool) -> dict[str, list[float]]:
    name = run.resolve().name
    server, base = serve(run)
    times: dict[str, list[float]] = {}
    try:
        steps = json.loads(urllib.request.urlopen(f"{base}/api/runs/{name}/snapshots").read())["steps"]
        request(base, f"/api/runs/{name}/inspect", {"prompt": prompt})  # the run itself, loaded once
        request(base, f"/api/runs/{name}/embeddings")
        for step in steps:
            calls = {
                "inspect": partial(request, base, f"/api/runs/{name}/inspect", {"prompt": prompt, "step": step}),
                "embeddings": partial(request, base, f"/api/runs/{name}/embeddings?step={step}"),
            }
            first, second = ("inspect", "embeddings") if inspect_first else ("embeddings", "inspect")
            times.setdefault(f"{first}_not_loaded", []).append(calls[first]())
            times.setdefault(f"{second}_loaded", []).append(calls[second]())
            times.setdefault(f"{first}_loaded", []).append(calls[first]())
    finally:
        server.terminate()
        server.wait(timeout=30)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    times = measure(args.run, args.prompt, inspect_first=True)
    for kind, values in measure(args.run, args.prompt, inspect_first=False).items():
        times.setdefault(kind, []).extend(values)
    report(
        {
            "benchmark": "snapshot_load",
            "cpu": cpu_name(),
            "date": date.today().isoformat(),
            "run": str(args.run),
            "prompt_characters": len(args.prompt),
            "milliseconds": {kind: summary(values) for kind, values in sorted(times.items())},
        },
        args.out,
    )


if __name__ == "__main__":
    run_main(main)
