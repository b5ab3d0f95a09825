"""What a long run's metrics.jsonl costs `tinyllm serve`'s runs list, parsed on every poll or once per change.

    python benchmarks/serve_runs_list.py RUN [--copies 10] [--requests 15] [--out results.json]

The page asks for the runs list every 5 seconds, and each answer reads every run's metrics. This
copies RUN into a temporary folder with its metrics.jsonl repeated `--copies` times end to end (as
if it had trained that much longer), then times `GET /api/runs` in-process: with the server's
parsed-metrics cache emptied before every request (how it was before the cache), and as it is.
Prints the median milliseconds of each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from tinyllm.web.app import create_app

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, report  # noqa: E402


def lengthen(metrics: Path, copies: int) -> int:
    """Repeat the run's records `copies` times, their iterations continuing; the number of lines."""
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    steps = records[-1]["iter"]
    lines = [json.dumps({**r, "iter": r["iter"] + k * steps}) for k in range(copies) for r in records]
    metrics.write_text("\n".join(lines) + "\n")
    return len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder with a metrics.jsonl")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if not (args.run / "metrics.jsonl").is_file():
        sys.exit(f"error: {args.run} has no metrics.jsonl")
    with tempfile.TemporaryDirectory() as folder:
        shutil.copytree(args.run, Path(folder) / "long")
        lines = lengthen(Path(folder) / "long" / "metrics.jsonl", args.copies)
        app = create_app(Path(folder))
        client = TestClient(app)

        def median_ms(forget: bool) -> float:
            times = []
            for _ in range(args.requests):
                if forget:
                    app.state.library._records.clear()  # parse again, as every request did before the cache
                start = time.perf_counter()
                client.get("/api/runs").raise_for_status()
                times.append((time.perf_counter() - start) * 1000)
            return round(statistics.median(times), 1)

        result = {
            "cpu": cpu_name(),
            "metrics_lines": lines,
            "runs_list_ms_parsed_every_request": median_ms(forget=True),
            "runs_list_ms_cached": median_ms(forget=False),
        }
    report(result, args.out)


if __name__ == "__main__":
    main()
