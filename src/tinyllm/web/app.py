"""The web app behind `tinyllm serve`: a JSON API over the runs of a folder, and the page that uses it.

    GET  /api/runs                      every run: task, parameters, steps, best test loss, last change
    GET  /api/runs/NAME/metrics?since=N the run's metrics.jsonl records after iteration N
    GET  /api/runs/NAME/snapshots       the steps the run kept snapshots of (ascending)
    POST /api/runs/NAME/generate        sampler settings -> tokens as server-sent events
    POST /api/runs/NAME/inspect         {"prompt", "step"?} -> tokens, attention, logit lens, sampler stages
    GET  /api/runs/NAME/embeddings?step=N  token embeddings in 2-D (+ the task's own views)
                                        (step: a snapshot's weights; absent, the latest)
    GET  /api/runs/NAME/baselines       counting baselines of a text run's split, and when the model passed each
    GET  /                              the page (static files shipped in the package)

Every mistake is a 4xx with a JSON body `{"error": "..."}` (422 for a malformed request). Each loaded
run has one decode loop (`batching.py`), in a thread of its own, that steps every generation of that
run together; a request beyond `max_batch` waits its turn, beyond `max_queue` waiting it gets a 429
with Retry-After. Inspecting runs in worker threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
import typing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ConfigDict, Field, create_model
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..batching import MAX_BATCH, MAX_QUEUE, Generation, QueueFull
from ..errors import TinyLLMError
from ..inference import TextPieces
from ..sampling import SamplingParams
from .library import RunLibrary, RunNotFound
from .views import baselines, embeddings, inspect_prompt

STATIC = Path(__file__).parent / "static"
MAX_PROMPT_CHARS = 4000  # a prompt longer than this is refused (the models' contexts are far shorter)
MAX_NEW_TOKENS = 2000  # per generation: enough for pages of text, not enough to tie up a worker for long
MAX_STOPS = 8
RETRY_AFTER_S = 2  # a refused generation (429) is told to try again after this many seconds
WAKE_EVERY_S = 0.02  # a stream's new tokens are sent at most this often (see `Waiter`)


def _sampler_fields() -> dict[str, Any]:
    """`SamplingParams`'s fields as pydantic wants them: name -> (type, default)."""
    types = typing.get_type_hints(SamplingParams)
    return {f.name: (types[f.name], f.default) for f in dataclasses.fields(SamplingParams)}


class Sampler(create_model("SamplerFields", **_sampler_fields())):  # type: ignore[misc]
    """The sampler settings: the fields of `SamplingParams`, by the same names; their ranges are
    checked by `SamplingParams` itself (a 400 in its words)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # an unknown field is a 422, not ignored

    def params(self) -> SamplingParams:
        return SamplingParams.from_options(self.model_dump(include=set(SamplingParams.names())))


class GenerateRequest(Sampler):
    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    max_new_tokens: int | None = Field(default=None, ge=0, le=MAX_NEW_TOKENS)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stop: list[str] | None = Field(default=None, max_length=MAX_STOPS)


class InspectRequest(Sampler):
    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    step: int | None = Field(default=None, ge=0)  # a snapshot's step (absent: the latest weights)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    root: str | Path, only: str | None = None, max_batch: int = MAX_BATCH, max_queue: int = MAX_QUEUE
) -> FastAPI:
    """The app serving the runs in folder `root` (or only the run `only` inside it). Each loaded run
    decodes its generations together, `max_batch` at a time; `max_queue` more may wait (then 429)."""
    library = RunLibrary(Path(root), only, max_batch, max_queue)
    app = FastAPI(title="tinyllm", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.library = library
    _add_error_handlers(app)

    @app.get("/api/runs")
    def list_runs() -> dict[str, Any]:
        return {"runs": [library.summary(name) for name in library.names()]}

    @app.get("/api/runs/{name}/metrics")
    def run_metrics(name: str, since: int = 0) -> dict[str, Any]:
        return {"name": name, "records": library.metrics(name, since)}

    @app.get("/api/runs/{name}/snapshots")
    def run_snapshots(name: str) -> dict[str, Any]:
        return {"steps": library.snapshot_steps(name)}

    @app.post("/api/runs/{name}/inspect")
    async def inspect(name: str, request: InspectRequest) -> dict[str, Any]:
        params = request.params()
        run = await run_in_threadpool(library.run_at, name, request.step)
        return {"step": request.step, **await run_in_threadpool(inspect_prompt, run, request.prompt, params)}

    @app.get("/api/runs/{name}/embeddings")
    async def run_embeddings(name: str, step: int | None = Query(default=None, ge=0)) -> dict[str, Any]:
        run = await run_in_threadpool(library.run_at, name, step)
        return {"step": step, **await run_in_threadpool(embeddings, run)}

    @app.get("/api/runs/{name}/baselines")
    async def run_baselines(name: str) -> dict[str, Any]:
        run = await run_in_threadpool(library.run, name)
        found = await run_in_threadpool(baselines, run)  # counted once, then read from the run folder
        return {
            "baselines": found["baselines"],
            "bits_per_char": found.get("baselines_bits_per_char"),
            "passed_at": found.get("baselines_passed_at"),
            "note": found.get("baselines_note"),
        }

    @app.post("/api/runs/{name}/generate")
    async def generate(name: str, request: GenerateRequest) -> StreamingResponse:
        run, loop = await run_in_threadpool(library.decode_loop, name)
        options = request.model_dump(exclude={"prompt", "max_new_tokens"})  # the sampler's, seed and stop
        waiter = Waiter(asyncio.get_running_loop())
        # everything is checked here, before the stream starts: a mistake is a 400 (a full queue a 429)
        g, pieces = run.submit(request.prompt, request.max_new_tokens, loop=loop, notify=waiter.notify, **options)
        waiter.generation = g
        return StreamingResponse(_events(g, pieces, waiter), media_type="text/event-stream")

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


class Waiter:
    """Wakes one response's coroutine when the decode loop (another thread) has new tokens for it.

    At most every `WAKE_EVERY_S` (the first token and the end at once): the tokens in between are
    sent together, as one event. Text arriving 50 times a second looks no different, and the server
    spends its time decoding instead of waking sixteen coroutines for every token."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.event, self.pending = loop, asyncio.Event(), False
        self.generation: Generation | None = None  # set once submitted
        self.woken_at = -math.inf

    def notify(self) -> None:  # from the decode loop's thread, after each of its steps
        if self.pending:
            return
        now = time.monotonic()
        ended = self.generation is None or self.generation.finished
        if not ended and now - self.woken_at < WAKE_EVERY_S:
            return  # the loop calls again after its next step
        self.pending, self.woken_at = True, now
        self.loop.call_soon_threadsafe(self.event.set)

    async def wait(self) -> None:
        await self.event.wait()
        self.event.clear()
        self.pending = False  # before the tokens are read: any token after this wakes us again


async def _events(g: Generation, pieces: TextPieces, waiter: Waiter) -> AsyncIterator[str]:
    """Server-sent events: a `token` event per piece of text, then `done` with the whole text (or
    `error`). A closed connection cancels the generation: its row is free at the loop's next step."""
    text, seen = "", 0
    try:
        while not pieces.stopped:
            await waiter.wait()
            new = g.tokens[seen:]
            seen += len(new)
            piece = "".join(pieces.feed(token) for token in new)
            ended = g.finished and seen == len(g.tokens)
            if ended and g.error:
                yield f"event: error\ndata: {json.dumps({'error': g.error})}\n\n"
                return
            if ended:
                piece += pieces.finish()
            if piece:
                text += piece
                yield f"event: token\ndata: {json.dumps({'text': piece})}\n\n"
            if ended:
                break
        yield f"event: done\ndata: {json.dumps({'text': text})}\n\n"
    finally:
        g.cancel()


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RunNotFound)
    async def not_found(request: Request, exc: RunNotFound) -> JSONResponse:
        return error(404, str(exc))

    @app.exception_handler(QueueFull)
    async def busy(request: Request, exc: QueueFull) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=429, headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(TinyLLMError)
    async def bad_request(request: Request, exc: TinyLLMError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors()[:5]:
            where = ".".join(str(part) for part in e.get("loc", ()) if part != "body") or "body"
            problems.append(f"{where}: {e.get('msg', 'invalid')}")
        return error(422, "; ".join(problems))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # a bug: say so, keep serving
        return error(500, f"internal error: {type(exc).__name__}")
