"""A server for a class: generations of one run decoded together, the same text as alone, the limits
(--max-batch, --max-queue, 429 + Retry-After), closed connections, `run.sample` and `tinyllm sample`
with several prompts."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import tinyllm
from tinyllm.batching import DecodeLoop

pytest.importorskip("fastapi")
import uvicorn  # noqa: E402

from tinyllm.web.app import create_app  # noqa: E402

from .test_app import events, free_port  # noqa: E402


class LiveServer:
    """The app on a real port, in a thread of this process."""

    def __init__(self, app) -> None:
        self.app, self.port = app, free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def post(self, path: str, body: dict) -> tuple[int, dict, str]:
        connection = self.connect()
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read().decode()
        connection.close()
        return response.status, dict(response.getheaders()), text


def loop_of(app, name) -> DecodeLoop:
    return app.state.library.run(name).decode_loop()


def test_concurrent_generations_get_the_text_each_gets_alone(tiny_run):
    app = create_app(tiny_run.parent)
    prompts = ["to be", "O", "what light through yonder window breaks", "the king", "a", "my lord,", "ROMEO:", "be"]
    bodies = [
        {"prompt": p, "max_new_tokens": 30 + 7 * i, "seed": i, "temperature": 0.8, "top_k": 20}
        for i, p in enumerate(prompts)
    ]
    with LiveServer(app) as server, ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: server.post(f"/api/runs/{tiny_run.name}/generate", body), bodies))
    run = tinyllm.load(tiny_run)
    for body, (status, _, text) in zip(bodies, answers, strict=True):
        assert status == 200
        pairs = events(text)
        assert pairs[-1][0] == "done"
        body = dict(body)
        expected = run.complete(body.pop("prompt"), body.pop("max_new_tokens"), **body)
        assert pairs[-1][1]["text"] == "".join(d["text"] for _, d in pairs[:-1]) == expected


def slow_steps(monkeypatch, seconds=0.02):
    """Make each decode step take a while, so that generations stay open during a test."""
    step = DecodeLoop.step

    def slow(self):
        time.sleep(seconds)
        step(self)

    monkeypatch.setattr(DecodeLoop, "step", slow)


def open_stream(server, name, **body) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    connection = server.connect()
    body = {"prompt": "to be", "max_new_tokens": 2000, **body}
    connection.request("POST", f"/api/runs/{name}/generate", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    assert response.readline().startswith(b"event: token")  # it has started
    return connection, response


def test_beyond_max_batch_a_request_waits_and_beyond_max_queue_it_gets_429(tiny_run, monkeypatch):
    slow_steps(monkeypatch)
    app = create_app(tiny_run.parent, max_batch=1, max_queue=1)
    with LiveServer(app) as server:
        first = open_stream(server, tiny_run.name)
        waiting = server.connect()  # this one waits for the only row
        waiting.request(
            "POST",
            f"/api/runs/{tiny_run.name}/generate",
            json.dumps({"prompt": "to", "max_new_tokens": 3}),
            {"Content-Type": "application/json"},
        )
        time.sleep(0.3)
        status, headers, text = server.post(f"/api/runs/{tiny_run.name}/generate", {"prompt": "a"})
        assert status == 429 and int(headers["retry-after"]) > 0 and "try again" in json.loads(text)["error"]
        assert loop_of(app, tiny_run.name).busy() == (1, 1)
        first[0].close()  # the first leaves: the waiting one takes its row and finishes
        response = waiting.getresponse()
        assert response.status == 200 and events(response.read().decode())[-1][0] == "done"
        status, _, text = server.post(f"/api/runs/{tiny_run.name}/generate", {"prompt": "a", "max_new_tokens": 2})
        assert status == 200 and events(text)[-1][0] == "done"


def test_a_closed_connection_frees_its_place(tiny_run, monkeypatch):
    slow_steps(monkeypatch)
    app = create_app(tiny_run.parent)
    with LiveServer(app) as server:
        streams = [open_stream(server, tiny_run.name, seed=i) for i in range(3)]
        loop = loop_of(app, tiny_run.name)
        assert loop.busy() == (3, 0)
        streams[0][0].close()
        streams[0][1].close()
        deadline = time.time() + 10
        while loop.busy()[0] != 2 and time.time() < deadline:
            time.sleep(0.01)
        assert loop.busy() == (2, 0)
        for connection, response in streams[1:]:
            response.close()
            connection.close()


def test_bad_requests_stay_4xx_while_others_decode(tiny_run, monkeypatch):
    slow_steps(monkeypatch, 0.005)
    app = create_app(tiny_run.parent)
    with LiveServer(app) as server:
        connection, response = open_stream(server, tiny_run.name, max_new_tokens=200, seed=1)
        for body in (
            {"prompt": ""},
            {"prompt": "\u2603"},
            {"prompt": "a", "temperature": -1},
            {"prompt": "a", "top_k": "x"},
        ):
            status, _, text = server.post(f"/api/runs/{tiny_run.name}/generate", body)
            assert 400 <= status < 500 and json.loads(text)["error"]
        rest = response.read().decode()
        assert rest.rstrip().splitlines()[-2] == "event: done"
        connection.close()


def test_run_sample_takes_a_list_of_prompts(tiny_run):
    run = tinyllm.load(tiny_run)
    prompts = ["to be", "what light", "O"]
    samples = run.sample(prompts, num_samples=2, max_new_tokens=25, seed=5, temperature=0.7)
    assert [len(row) for row in samples] == [2, 2, 2]
    for prompt, row in zip(prompts, samples, strict=True):
        assert row == [run.complete(prompt, 25, seed=5 + i, temperature=0.7) for i in range(2)]
    assert run.sample("to be", 2, 25, seed=5, temperature=0.7) == samples[0]  # a string: a list of samples
    assert run.generated_tokens == 50


def test_tinyllm_sample_with_several_prompts_prints_each_in_order(tiny_run):
    command = [sys.executable, "-m", "tinyllm", "sample", str(tiny_run), "--max-new-tokens", "20", "--seed", "3"]
    done = subprocess.run([*command, "--prompt", "to be", "--prompt", "the king"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    run = tinyllm.load(tiny_run)
    expected = ["to be" + run.complete("to be", 20, seed=3), "the king" + run.complete("the king", 20, seed=3)]
    assert done.stdout == expected[0] + "\n" + "-" * 40 + "\n" + expected[1] + "\n"
