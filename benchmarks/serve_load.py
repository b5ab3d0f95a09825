"""Load on `tinyllm serve`: 16 clients streaming generations for 30 s, while one polls the runs list.

    python benchmarks/serve_load.py runs/shakespeare [--clients 16] [--seconds 30] [--max-new-tokens 100]

Starts `tinyllm serve RUN` in its own process on a free port, then prints one JSON object: streams
started and completed, responses by status class (5xx must be 0), the runs list's latency (p50,
p95, max) while the generations run, and the server's resident memory at the start, the peak and
the end (sampled every 0.5 s from /proc).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stream_once(base: str, body: dict) -> tuple[int, bool]:
    request = urllib.request.Request(
        f"{base}/api/runs/{body.pop('_run')}/generate",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            text = response.read().decode()
            return response.status, "event: done" in text
    except urllib.error.HTTPError as e:
        return e.code, False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--max-new-tokens", type=int, default=100)
    args = parser.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "tinyllm", "serve", str(args.run), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        server.stdout.readline()
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/api/runs", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        result = run_load(base, args, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps(result, indent=2))


def run_load(base: str, args: argparse.Namespace, pid: int) -> dict:
    name = args.run.resolve().name
    deadline = time.monotonic() + args.seconds
    lock = threading.Lock()
    counts = {"started": 0, "completed": 0, "2xx": 0, "4xx": 0, "5xx": 0}
    latencies: list[float] = []
    memory = [rss_mb(pid)]

    def client(i: int) -> None:
        while time.monotonic() < deadline:
            body = {
                "_run": name,
                "prompt": "to be",
                "max_new_tokens": args.max_new_tokens,
                "seed": i,
                "temperature": 0.8,
            }
            with lock:
                counts["started"] += 1
            status, done = stream_once(base, body)
            with lock:
                counts[f"{status // 100}xx"] = counts.get(f"{status // 100}xx", 0) + 1
                counts["completed"] += done

    def poll_runs() -> None:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            urllib.request.urlopen(f"{base}/api/runs", timeout=60).read()
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.25)

    def watch_memory() -> None:
        while time.monotonic() < deadline:
            memory.append(rss_mb(pid))
            time.sleep(0.5)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    threads += [threading.Thread(target=poll_runs), threading.Thread(target=watch_memory)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    memory.append(rss_mb(pid))
    latencies.sort()
    return {
        "clients": args.clients,
        "seconds": args.seconds,
        "max_new_tokens": args.max_new_tokens,
        **counts,
        "runs_list_requests": len(latencies),
        "runs_list_latency_ms": {
            "p50": round(1000 * statistics.median(latencies), 1),
            "p95": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1),
            "max": round(1000 * latencies[-1], 1),
        },
        "server_rss_mb": {"start": round(memory[0]), "peak": round(max(memory)), "end": round(memory[-1])},
    }


if __name__ == "__main__":
    main()
