"""`tinyllm serve`'s JSON API: what each view shows, and that no request can break it."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

import tinyllm
from tinyllm.plots import read_metrics
from tinyllm.web.app import create_app
from tinyllm.web.views import inspect_prompt

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402


@pytest.fixture(scope="module")
def client(tiny_run):
    return TestClient(create_app(tiny_run.parent))


def events(text):
    """The (event, data) pairs of a server-sent events body."""
    pairs = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        pairs.append((lines["event"], json.loads(lines["data"])))
    return pairs


def test_runs_list_shows_the_run(client, tiny_run):
    runs = client.get("/api/runs").json()["runs"]
    (run,) = [r for r in runs if r["name"] == tiny_run.name]
    loaded = tinyllm.load(tiny_run)
    assert run["task"] == "shakespeare" and run["params"] == loaded.model.num_params()
    records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert run["steps"] == records[-1]["iter"]
    assert run["best_test_loss"] == min(r["test_loss"] for r in records if "test_loss" in r)


def test_metrics_since_an_iteration(client, tiny_run):
    all_records = client.get(f"/api/runs/{tiny_run.name}/metrics").json()["records"]
    later = client.get(f"/api/runs/{tiny_run.name}/metrics?since=15").json()["records"]
    assert [r["iter"] for r in later] == [r["iter"] for r in all_records if r["iter"] > 15]


def test_generate_streams_the_text_that_complete_gives(client, tiny_run):
    settings = dict(
        max_new_tokens=40, temperature=0.9, top_k=10, top_p=0.95, min_p=0.01, repetition_penalty=1.1, seed=7
    )
    response = client.post(f"/api/runs/{tiny_run.name}/generate", json={"prompt": "to be", **settings, "stop": ["zz"]})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    pairs = events(response.text)
    assert pairs[-1][0] == "done" and all(kind == "token" for kind, _ in pairs[:-1])
    streamed = "".join(data["text"] for _, data in pairs[:-1])
    expected = tinyllm.load(tiny_run).complete("to be", stop=["zz"], **settings)
    assert streamed == pairs[-1][1]["text"] == expected


def test_inspect_returns_every_view(client, tiny_run):
    run = tinyllm.load(tiny_run)
    body = client.post(f"/api/runs/{tiny_run.name}/inspect", json={"prompt": "to be or", "top_k": 3}).json()
    T, cfg = 8, run.model.config
    assert body["tokens"] == list("to be or")
    attention = torch.tensor(body["attention"])
    assert attention.shape == (cfg.n_layer, cfg.n_head, T, T)
    torch.testing.assert_close(attention.sum(-1), torch.ones(cfg.n_layer, cfg.n_head, T), atol=1e-3, rtol=0)
    assert len(body["logit_lens"]["top_token"]) == cfg.n_layer + 1
    last = body["stages"]["positions"][-1]
    assert body["stages"]["names"] == ["raw", "repetition_penalty", "temperature", "top_k", "top_p", "min_p"]
    assert last["kept"][3] == 3  # top-k 3 leaves 3 tokens
    with torch.no_grad():
        probs = run.model(torch.tensor([run.tokenizer.encode("to be or")]))[0, -1].softmax(-1)
    for candidate in last["candidates"]:
        assert abs(candidate["probs"][0] - probs[candidate["id"]].item()) < 1e-4


def test_inspecting_a_long_text_looks_at_the_last_window(client, tiny_run):
    body = client.post(f"/api/runs/{tiny_run.name}/inspect", json={"prompt": "to be or not " * 10}).json()
    block = tinyllm.load(tiny_run).model.config.block_size
    assert body["dropped"] == 130 - block and "".join(body["tokens"]) == ("to be or not " * 10)[-block:]


def test_embeddings_view(client, tiny_run):
    body = client.get(f"/api/runs/{tiny_run.name}/embeddings").json()
    assert len(body["labels"]) == len(body["points"]) == tinyllm.load(tiny_run).tokenizer.vocab_size


def test_a_run_is_reloaded_when_its_weights_change(tiny_run, tmp_path):
    import shutil

    served = tmp_path / "served"
    shutil.copytree(tiny_run, served / "r")
    app = create_app(served)
    first = app.state.library.run("r")
    assert app.state.library.run("r") is first  # cached
    weights = served / "r" / "model.safetensors"
    weights.write_bytes(weights.read_bytes())
    os.utime(weights, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert app.state.library.run("r") is not first


def test_metrics_are_parsed_again_only_when_the_file_changes(tiny_run, tmp_path, monkeypatch):
    import shutil

    import tinyllm.web.library as library

    parsed = []
    monkeypatch.setattr(library, "read_metrics", lambda path: parsed.append(path) or read_metrics(path))
    shutil.copytree(tiny_run, tmp_path / "served" / "r")
    client = TestClient(create_app(tmp_path / "served"))
    first = client.get("/api/runs").json()["runs"][0]
    assert client.get("/api/runs/r/metrics").json()["records"][-1]["iter"] == first["steps"]
    assert len(parsed) == 1  # the runs list and the metrics poll share one parse of the unchanged file
    with open(tmp_path / "served" / "r" / "metrics.jsonl", "a", encoding="utf-8") as f:  # training goes on
        f.write(json.dumps({"iter": first["steps"] + 1, "loss": 1.0, "test_loss": 0.5}) + "\n")
    assert [r["iter"] for r in client.get(f"/api/runs/r/metrics?since={first['steps']}").json()["records"]] == [
        first["steps"] + 1
    ]
    assert client.get("/api/runs").json()["runs"][0]["best_test_loss"] == 0.5
    assert len(parsed) == 2


def test_serving_one_run_folder_serves_only_it(tiny_run):
    client = TestClient(create_app(tiny_run.parent, only=tiny_run.name))
    assert [r["name"] for r in client.get("/api/runs").json()["runs"]] == [tiny_run.name]


NAME = "{run}"
BAD_REQUESTS = [
    ("get", "/api/runs/nosuchrun/metrics", None),
    ("get", "/api/runs/..%2F..%2Fetc%2Fpasswd/metrics", None),
    ("get", "/api/runs/%2e%2e/metrics", None),
    ("get", "/api/runs/%2Fetc/metrics", None),
    ("get", "/api/runs/../../etc/passwd", None),
    ("get", "/static/../../../etc/passwd", None),
    ("get", "/static/%2e%2e/%2e%2e/rundir.py", None),
    ("get", f"/api/runs/{NAME}/metrics?since=abc", None),
    ("get", "/api/nothing", None),
    ("post", "/api/runs/nosuchrun/generate", {"prompt": "to be"}),
    ("post", "/api/runs/..%2F..%2Ftmp/inspect", {"prompt": "to be"}),
    ("post", f"/api/runs/{NAME}/generate", {}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": None}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": 5}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": ["to be"]}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": ""}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "x" * 5000}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be ¤"}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "unknown": 1}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "max_new_tokens": 10**9}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "max_new_tokens": -1}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "max_new_tokens": 1.5}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "max_new_tokens": "ten"}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "temperature": -1}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "temperature": "hot"}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "temperature": None}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "top_k": 0}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "top_k": -5}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "top_k": 2.5}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "top_p": 2}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "top_p": 0}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "min_p": 1.5}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "repetition_penalty": 0}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "seed": -1}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "seed": 2**70}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "stop": "be"}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "stop": [1, 2]}),
    ("post", f"/api/runs/{NAME}/generate", {"prompt": "to be", "stop": ["a"] * 50}),
    ("post", f"/api/runs/{NAME}/inspect", {}),
    ("post", f"/api/runs/{NAME}/inspect", {"prompt": ""}),
    ("post", f"/api/runs/{NAME}/inspect", {"prompt": "to be", "seed": 1}),
    ("post", f"/api/runs/{NAME}/inspect", {"prompt": "to be", "top_p": 7}),
    ("post", f"/api/runs/{NAME}/inspect", {"prompt": "€"}),
    ("post", f"/api/runs/{NAME}/generate", b"\xff\xfe\x00not json"),
    ("post", f"/api/runs/{NAME}/generate", b'{"prompt": "to be", "temperature": 1e999}'),
    ("post", f"/api/runs/{NAME}/generate", b"[1, 2, 3]"),
    ("post", f"/api/runs/{NAME}/generate", b'{"prompt": "to be"'),
    ("post", f"/api/runs/{NAME}/generate", b'"just a string"'),
    ("post", f"/api/runs/{NAME}/embeddings", {"prompt": "x"}),
    ("get", f"/api/runs/{NAME}/generate", None),
]


@pytest.mark.parametrize("method, path, body", BAD_REQUESTS, ids=[f"{m} {p} {str(b)[:40]}" for m, p, b in BAD_REQUESTS])
def test_malformed_requests_get_a_4xx_json_error(method, path, body, client, tiny_run):
    path = path.replace(NAME, tiny_run.name)
    if isinstance(body, bytes):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
    elif method == "post":
        response = client.post(path, json=body)
    else:
        response = client.get(path)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert isinstance(response.json()["error"], str) and "Traceback" not in response.text
    assert client.get("/api/runs").status_code == 200  # still serving


def test_nothing_outside_the_served_folder_is_read(tmp_path, tiny_run):
    import shutil

    served = tmp_path / "served"
    served.mkdir()
    shutil.copytree(tiny_run, tmp_path / "outside")  # a run next to the folder, not in it
    (served / "link").symlink_to(tmp_path / "outside")  # and a symlink that leads to it
    client = TestClient(create_app(served))
    assert client.get("/api/runs").json()["runs"] == []
    for name in ("outside", "link", "../outside", "..%2Foutside"):
        assert client.get(f"/api/runs/{name}/metrics").status_code == 404


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tinyllm_serve_starts_prints_its_address_and_binds_to_loopback(tiny_run):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinyllm", "serve", str(tiny_run), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=5) as response:
                    runs = json.loads(response.read())["runs"]
                break
            except OSError:
                time.sleep(0.1)
        assert [r["name"] for r in runs] == [tiny_run.name]
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        assert '<script src="/static/app.js">' in page and "http" not in page.replace("http-equiv", "")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_refuses_a_missing_folder(capsys):
    from tinyllm.cli import main

    assert main(["serve", "/nonexistent/runs"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_a_non_loopback_host_is_warned_about():
    from tinyllm.web import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


@pytest.mark.parametrize(
    "task, options, positions",
    [("modadd", {}, "learned"), ("addition", {"digits": 2}, "learned"), ("addition", {"digits": 2}, "abacus")],
)
def test_task_pictures_in_the_embeddings_view(task, options, positions, tmp_path):
    tinyllm.train(
        task,
        out_dir=tmp_path / task,
        task_options=options,
        model_overrides={"n_layer": 1, "n_head": 2, "n_embd": 16, "positions": positions},
        train_overrides={"max_iters": 2, "max_time": None, "eval_interval": 2, "eval_iters": 1},
        progress_bar=False,
        log=lambda *a: None,
    )
    body = TestClient(create_app(tmp_path)).get(f"/api/runs/{task}/embeddings").json()
    (view,) = body["views"]  # the task's own picture, as the task computes it (rounded to 4 decimals)
    run = tinyllm.load(tmp_path / task)
    (own,) = run.task.page_views(run.model, run.device)
    assert view["name"] == own["name"] and view["x"] == own["x"]
    assert set(view["guide"]) == {"what", "notice", "try"} and all(view["guide"].values())  # the task's words
    assert all(abs(shown - exact) <= 0.5e-4 + 1e-7 for shown, exact in zip(view["y"], own["y"], strict=True))
    if task == "modadd":
        # the norms are shares summing to 1; each shown value is off by at most half the last decimal
        assert view["name"] == "fourier" and view["x"] == list(range(49))
        assert abs(sum(view["y"]) - 1) <= len(view["y"]) * 0.5e-4 + 1e-6
    else:
        assert view["name"] == "digit_accuracy" and view["x"] == [1, 2, 3] and all(0 <= a <= 1 for a in view["y"])
        # the inspect view and streaming work with either kind of positions
        client = TestClient(create_app(tmp_path))
        inspected = client.post(f"/api/runs/{task}/inspect", json={"prompt": "12+34="})
        assert inspected.status_code == 200, inspected.text
        assert len(inspected.json()["attention"][0][0]) == len(inspected.json()["tokens"])


def test_a_step_shows_that_snapshot_and_snapshots_are_loaded_once(tiny_run, tmp_path, monkeypatch):
    from tinyllm.inference import Run
    from tinyllm.snapshots import snapshot_steps

    served = tmp_path / "served"
    served.mkdir()
    shutil.copytree(tiny_run, served / "r", ignore=shutil.ignore_patterns(".lock"))
    client = TestClient(create_app(served))
    steps = client.get("/api/runs/r/snapshots").json()["steps"]
    assert steps == snapshot_steps(served / "r") and len(steps) >= 3
    early = tinyllm.load(served / "r", checkpoint=f"step:{steps[0]}")
    body = client.get(f"/api/runs/r/embeddings?step={steps[0]}").json()
    assert body["step"] == steps[0] and body["points"] != client.get("/api/runs/r/embeddings").json()["points"]
    traced = client.post("/api/runs/r/inspect", json={"prompt": "to be", "step": steps[0]}).json()
    expected = inspect_prompt(early, "to be", tinyllm.sampling.SamplingParams())
    assert traced["step"] == steps[0] and traced["attention"] == expected["attention"]
    loads = []
    at_step = Run.at_step
    monkeypatch.setattr(Run, "at_step", lambda self, step: loads.append(step) or at_step(self, step))
    for step in (steps[1], steps[1], steps[0], steps[1]):
        assert client.get(f"/api/runs/r/embeddings?step={step}").status_code == 200
    assert loads == [steps[1]]  # steps[0] was loaded above, steps[1] once: each snapshot is read once
    # a run trained again writes new snapshots: they are read again
    path = served / "r" / "snapshots" / f"step_{steps[1]}.safetensors"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    client.get(f"/api/runs/r/embeddings?step={steps[1]}")
    assert loads == [steps[1], steps[1]]
    assert client.get("/api/runs/r/embeddings?step=999999").status_code == 400


def test_a_run_without_snapshots_has_an_empty_list(tiny_run, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copytree(tiny_run, served / "r", ignore=shutil.ignore_patterns(".lock", "snapshots"))
    client = TestClient(create_app(served))
    assert client.get("/api/runs/r/snapshots").json() == {"steps": []}
    answer = client.post("/api/runs/r/inspect", json={"prompt": "to be", "step": 1})
    assert answer.status_code == 400 and "has no snapshots" in answer.json()["error"]


def test_loaded_snapshots_are_capped_by_their_size(tiny_run, tmp_path, monkeypatch):
    import tinyllm.web.library as library

    served = tmp_path / "served"
    served.mkdir()
    shutil.copytree(tiny_run, served / "r", ignore=shutil.ignore_patterns(".lock"))
    app = create_app(served)
    client = TestClient(app)
    steps = client.get("/api/runs/r/snapshots").json()["steps"]
    one = 4 * tinyllm.load(served / "r").model.num_params()
    monkeypatch.setattr(library, "LOADED_SNAPSHOT_BYTES", 2 * one)  # room for two models' weights
    for step in steps[:4]:
        assert client.get(f"/api/runs/r/embeddings?step={step}").status_code == 200
    assert [key[1] for key in app.state.library._snapshots] == steps[2:4]  # the two used last
