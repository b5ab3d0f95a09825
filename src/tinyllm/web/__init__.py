"""`tinyllm serve`: a local web page that shows a model inside (see `app.py` for the API).

tinyllm serve                                  # every run in runs/, at http://127.0.0.1:8000
tinyllm serve runs/shakespeare --port 8123 --open
"""

from __future__ import annotations

import gc
import ipaddress
import sys
import webbrowser
from pathlib import Path

from ..batching import MAX_BATCH, MAX_QUEUE
from ..errors import UsageError


def resolve_folder(path: str | Path) -> tuple[Path, str | None]:
    """(the folder whose runs are served, the one run's name when `path` is itself a run)."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"nothing to serve: {path} is not a folder (train a run first: tinyllm train shakespeare)")
    if (path / "config.json").is_file():
        return path.resolve().parent, path.resolve().name
    return path, None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    path: str | Path = "runs",
    host: str = "127.0.0.1",
    port: int = 8000,
    open_browser: bool = False,
    max_batch: int = MAX_BATCH,
    max_queue: int = MAX_QUEUE,
    threads: int | None = None,
) -> None:
    import torch
    import uvicorn

    from .app import create_app

    root, only = resolve_folder(path)
    # The decode loop's matrix products get all cores but one; the other is left to the event loop,
    # which answers requests and sends the tokens. Given both, PyTorch's threads wait for each other
    # while HTTP work holds a core: one client got 430 tokens/s instead of 1,040 on a 2-core CPU.
    torch.set_num_threads(threads or max(1, torch.get_num_threads() - 1))
    app = create_app(root, only, max_batch, max_queue)
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{port}"
    if not is_loopback(host):
        print(
            f"tinyllm: warning: serving on {host}, not only this machine: anyone who can reach it can use the models",
            file=sys.stderr,
        )
    print(f"tinyllm: serving {'the run ' + only if only else 'the runs in ' + str(root)} at {address} (Ctrl-C stops)")
    if open_browser:
        webbrowser.open(address)
    # What is imported by now (torch, FastAPI, pydantic: ~200,000 objects) is never garbage. Frozen, the
    # collector's full passes skip it: otherwise each one stalls the request it lands in by ~80 ms.
    gc.freeze()
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run()
    except OSError as e:
        raise UsageError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None
