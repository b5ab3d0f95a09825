"""Load on `tinyllm serve`: 1, 4, 16 and 32 clients streaming generations, beside one stream decoded
directly in Python.

    python benchmarks/serve_load.py runs/shakespeare [--clients 1,4,16,32] [--seconds 20]
                                    [--max-new-tokens 200] [--max-batch 32] [--out FILE]

Starts `tinyllm serve RUN` in its own process on a free port. At each number of clients, every
client asks for one generation after another (temperature 0.8, its own seed) for `--seconds`,
while one more client asks for the runs list every 0.25 s. It prints one JSON object: for each
level, the tokens per second of all streams together and of one stream, the time to first token
(request sent -> first token event; p50, p95), the runs list's latency (p50, p95), responses by
status class (5xx must be 0), and the server's peak resident memory; and, measured in this process
before and after the load (the server idle), one stream decoded directly with `run.complete`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name, report, run_main  # noqa: E402

PROMPT = "to be, or not to be"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def one_generation(port: int, name: str, seed: int, max_new_tokens: int) -> tuple[int, float | None, float]:
    """(status, seconds to the first token, seconds in all) of one streamed generation."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    body = {"prompt": PROMPT, "max_new_tokens": max_new_tokens, "seed": seed, "temperature": 0.8}
    t0 = time.perf_counter()
    connection.request("POST", f"/api/runs/{name}/generate", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    first = None
    if response.status == 200:
        line = response.readline()
        if line.startswith(b"event: token"):
            first = time.perf_counter() - t0
        rest = response.read()  # the remaining events at once: the client's own work stays small
        if b"event: done" not in line + rest:
            first = None
    else:
        response.read()
    connection.close()
    return response.status, first, time.perf_counter() - t0


def load_level(port: int, name: str, clients: int, seconds: float, max_new_tokens: int, pid: int) -> dict:
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    statuses: dict[str, int] = {}
    firsts: list[float] = []
    durations: list[float] = []
    runs_list: list[float] = []
    memory = [rss_mb(pid)]

    def client(i: int) -> None:
        seed = 1000 * i
        while time.monotonic() < deadline:
            status, first, total = one_generation(port, name, seed, max_new_tokens)
            seed += 1
            with lock:
                statuses[f"{status // 100}xx"] = statuses.get(f"{status // 100}xx", 0) + 1
                if first is not None:
                    firsts.append(first)
                    durations.append(total)

    def poll_runs() -> None:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=60).read()
            runs_list.append(time.perf_counter() - t0)
            memory.append(rss_mb(pid))
            time.sleep(0.25)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)] + [
        threading.Thread(target=poll_runs)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    tokens = len(durations) * max_new_tokens  # no stop strings: every generation makes max_new_tokens
    return {
        "clients": clients,
        "generations": len(durations),
        "tokens_per_s_all": round(tokens / wall, 1),
        "tokens_per_s_per_stream": round(statistics.median(max_new_tokens / d for d in durations), 1),
        "first_token_s": {"p50": round(percentile(firsts, 0.5), 3), "p95": round(percentile(firsts, 0.95), 3)},
        "runs_list_ms": {
            "p50": round(1000 * percentile(runs_list, 0.5), 1),
            "p95": round(1000 * percentile(runs_list, 0.95), 1),
            "requests": len(runs_list),
        },
        "responses": statuses,
        "server_peak_rss_mb": round(max(memory)),
    }


def direct_tokens_per_s(run_dir: Path, max_new_tokens: int, repeats: int = 3) -> float:
    """One stream decoded directly in Python (`run.complete`, the KV cache, eager): the median of `repeats`."""
    import tinyllm

    run = tinyllm.load(run_dir)
    rates = []
    for seed in range(repeats):
        t0 = time.perf_counter()
        run.complete(PROMPT, max_new_tokens, seed=seed, temperature=0.8)
        rates.append(max_new_tokens / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--clients", default="1,4,16,32", help="the numbers of clients, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of load at each level")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--max-batch", type=int, default=32, help="the server's --max-batch")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "tinyllm", "serve", str(args.run), "--port", str(port)]
    server = subprocess.Popen([*command, "--max-batch", str(args.max_batch)], stdout=subprocess.PIPE, text=True)
    name = args.run.resolve().name
    try:
        server.stdout.readline()
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        one_generation(port, name, 0, 10)  # load the model
        direct = [direct_tokens_per_s(args.run, args.max_new_tokens)]
        results = [load_level(port, name, c, args.seconds, args.max_new_tokens, server.pid) for c in levels]
        direct.append(direct_tokens_per_s(args.run, args.max_new_tokens))
    finally:
        server.terminate()
        server.wait(timeout=30)
    one = statistics.mean(direct)
    for level in results:
        level["vs_one_direct_stream"] = round(level["tokens_per_s_all"] / one, 2)
    report(
        {
            "benchmark": "serve_load",
            "cpu": cpu_name(),
            "date": date.today().isoformat(),
            "run": str(args.run),
            "max_new_tokens": args.max_new_tokens,
            "max_batch": args.max_batch,
            "seconds_per_level": args.seconds,
            "direct_tokens_per_s": {"before": round(direct[0], 1), "after": round(direct[1], 1)},
            "levels": results,
        },
        args.out,
    )


if __name__ == "__main__":
    run_main(main)
