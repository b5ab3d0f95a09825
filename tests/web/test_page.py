"""The page in a real browser: headless Chromium driven by Playwright, against a real server.

Needs Chromium (Debian's `chromium` package; `.ci/run` installs it) and Playwright (the dev extra).
Skipped, with the reason, where either is missing. Set TINYLLM_SCREENSHOTS=DIR to save a screenshot
of each view (docs/serve/ comes from a run of these tests on a 5-minute model: TINYLLM_SCREENSHOT_RUN).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import tinyllm

from ..conftest import SHAKESPEARE_EXCERPT, TINY_CLI_FLAGS

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install -y chromium)")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def served(tiny_run, tmp_path_factory):
    """A folder with a run in it (a real 5-minute run if TINYLLM_SCREENSHOT_RUN names one)."""
    folder = tmp_path_factory.mktemp("served")
    source = Path(os.environ.get("TINYLLM_SCREENSHOT_RUN", tiny_run))
    shutil.copytree(source, folder / "shakespeare", ignore=shutil.ignore_patterns(".lock"))
    if "TINYLLM_SCREENSHOT_RUN" not in os.environ:  # count the baselines on the text the run was trained on
        tinyllm.inference.run_baselines(tinyllm.load(folder / "shakespeare"), data_path=SHAKESPEARE_EXCERPT)
    return folder


@pytest.fixture(scope="module")
def server(served):
    import uvicorn

    from tinyllm.web.app import create_app

    # no corpus for the server to count on: it serves the baselines kept in the run folder (counted on
    # the excerpt the run was trained on), the same figures on any machine, at once
    saved = os.environ.get("TINYLLM_DATA_DIR")
    os.environ["TINYLLM_DATA_DIR"] = str(served / "no-corpus")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(served), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if uv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)
    if saved is not None:
        os.environ["TINYLLM_DATA_DIR"] = saved


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server)
    yield page
    assert all(url.startswith(server) for url in requests), "the page fetched something from elsewhere"
    context.close()


def screenshot(page, name, selector=None):
    folder = os.environ.get("TINYLLM_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        target = page.locator(selector) if selector else page
        target.screenshot(path=str(Path(folder) / f"{name}.png"))


def open_run(page, name="shakespeare"):
    page.locator(f'#runs-table tr[data-name="{name}"]').click()
    page.wait_for_selector("#generate:not([hidden])")


def generate(page, prompt, **fields):
    page.fill("#prompt", prompt)
    for name, value in fields.items():
        page.fill(f'#generate-form [name="{name}"]', str(value))
    page.click("#generate-button")


def test_runs_list_and_curves(page, served, server):
    (run,) = json.loads(urllib.request.urlopen(f"{server}/api/runs", timeout=30).read())["runs"]
    records = json.loads(urllib.request.urlopen(f"{server}/api/runs/shakespeare/metrics", timeout=30).read())["records"]
    row = page.locator('#runs-table tr[data-name="shakespeare"]')
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == run["task"] == "shakespeare"
    assert cells[3].replace(",", "") == str(run["steps"]) and cells[4] == f"{run['best_test_loss']:.4f}"
    assert page.locator("#prompt").input_value() == ""  # nothing chosen yet
    open_run(page)
    assert page.locator("#prompt").input_value() == run["example_prompt"] == "to be"  # the task's own
    tests = [r["test_loss"] for r in records if "test_loss" in r]
    line = page.locator('#curves polyline[data-series="test_loss"]')
    line.wait_for()
    assert int(line.get_attribute("data-count")) == len(tests) and float(line.get_attribute("data-last")) == tests[-1]
    # the counting baselines: one line each on the loss chart, at the API's values, and when they were passed
    api = json.loads(urllib.request.urlopen(f"{server}/api/runs/shakespeare/baselines", timeout=60).read())
    page.wait_for_function("document.querySelectorAll('#curves line.baseline').length == 7", timeout=60_000)
    drawn = page.locator("#curves line.baseline").evaluate_all(
        "ls => ls.map(l => [l.dataset.baseline, Number(l.dataset.value)])"
    )
    assert dict(drawn) == api["baselines"]
    passed = page.locator("#baselines").inner_text()
    for name, at in api["passed_at"].items():
        assert (f"{name} at step {at['step']}" if at else f"{name} not yet") in passed
    screenshot(page, "runs", "#runs")


def test_generation_streams_the_text_complete_gives(page, served):
    open_run(page)
    generate(page, "to be", max_new_tokens=60, temperature=0.8, top_k=20, seed=3)
    page.wait_for_selector("#output[data-done=true]")
    expected = tinyllm.load(served / "shakespeare").complete(
        "to be", max_new_tokens=60, temperature=0.8, top_k=20, seed=3
    )
    assert page.locator("#output").inner_text() == "to be" + expected
    page.wait_for_selector("#inspect:not([hidden])")
    screenshot(page, "generate", "#generate")


def test_next_token_bars_equal_the_api_and_top_k_keeps_k(page, served, server):
    open_run(page)
    page.fill("#prompt", "to be or not")
    page.fill('#generate-form [name="top_k"]', "3")
    page.click("#inspect-button")
    page.wait_for_selector("#inspect:not([hidden])")
    page.locator('.tok[data-pos="4"]').click()
    request = urllib.request.Request(
        f"{server}/api/runs/shakespeare/inspect",
        data=json.dumps({"prompt": "to be or not", "temperature": 0.8, "top_k": 3}).encode(),
        headers={"Content-Type": "application/json"},
    )
    api = json.loads(urllib.request.urlopen(request, timeout=30).read())["stages"]["positions"][4]
    for s, stage in enumerate(["raw", "repetition_penalty", "temperature", "top_k", "top_p", "min_p"]):
        shown = page.locator(f'.stage[data-stage="{stage}"] .bar-row')
        values = [float(v) for v in shown.evaluate_all("rows => rows.map(r => r.dataset.prob)")]
        assert values == [c["probs"][s] for c in api["candidates"]]
        # each shown probability is rounded to 5 decimals (views._stages): the shown ones sum to at
        # most 1 plus half a unit of the last decimal for each of them
        assert sum(values) <= 1 + len(values) * 0.5e-5 + 1e-9
    top_k_bars = page.locator('.stage[data-stage="top_k"] .bar-row').evaluate_all(
        "rows => rows.map(r => Number(r.dataset.prob))"
    )
    assert sum(1 for v in top_k_bars if v > 0) == 3
    screenshot(page, "next_token", "#stages")


def test_attention_grid_has_a_panel_per_layer_and_head_and_the_logit_lens(page, served):
    config = tinyllm.load(served / "shakespeare").model.config
    open_run(page)
    page.fill("#prompt", "to be or not to be")
    page.click("#inspect-button")
    page.wait_for_selector("#attention-grid .grid-panel")
    assert page.locator("#attention-grid .grid-panel").count() == config.n_layer * config.n_head
    assert page.locator("#attention-heads .head-panel").count() == config.n_layer * config.n_head
    weights = page.locator('.head-panel[data-layer="0"][data-head="0"] span.w').evaluate_all(
        "spans => spans.map(s => Number(s.dataset.weight))"
    )
    # a row of attention sums to 1; each weight is shown rounded to 4 decimals (views._r)
    assert len(weights) == len("to be or not to be") and abs(sum(weights) - 1) <= len(weights) * 0.5e-4 + 1e-9
    assert page.locator("#logit-lens tbody tr").count() == config.n_layer + 1
    screenshot(page, "attention", "#attention-heads")
    screenshot(page, "attention_grid", "#attention-grid")
    screenshot(page, "logit_lens", "#logit-lens")
    page.wait_for_selector("#embeddings:not([hidden])")
    screenshot(page, "embeddings", "#embeddings")


def test_a_training_run_grows_its_curve_while_the_page_is_open(page, served, server):
    run = served / "live"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tinyllm",
            "train",
            "shakespeare",
            "--out",
            str(run),
            *TINY_CLI_FLAGS,
            "--max-iters",
            "100000",
            "--max-time",
            "60s",
            "--eval-interval",
            "20",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (run / "metrics.jsonl").is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)  # the run exists once it has logged its first step
        page.reload()  # (the page would see it within 5 s by itself: it refreshes the list that often)
        row = page.locator('#runs-table tr[data-name="live"]')
        row.wait_for(timeout=30_000)
        row.click()
        line = page.locator('#curves polyline[data-series="train_loss"]')
        line.wait_for(timeout=30_000)
        first = int(line.get_attribute("data-count"))
        page.wait_for_function(
            f"() => Number(document.querySelector('#curves polyline[data-series=train_loss]').dataset.count) > {first}",
            timeout=30_000,
        )
        # the snapshots it writes as it goes join the step slider
        slider = page.locator("#step-slider")
        known = len((slider.get_attribute("data-steps") or "").split(","))
        page.wait_for_function(
            f"() => document.querySelector('#step-slider').dataset.steps.split(',').length > {known}", timeout=30_000
        )
        shown = [int(s) for s in slider.get_attribute("data-steps").split(",")]
        listed = json.loads(urllib.request.urlopen(f"{server}/api/runs/live/snapshots", timeout=30).read())["steps"]
        assert shown == listed[: len(shown)] and int(slider.get_attribute("max")) == len(shown)
    finally:
        proc.terminate()  # Ctrl-C's signal's cousin: the run checkpoints and stops; its metrics are final
        proc.wait(timeout=60)
    records = json.loads(urllib.request.urlopen(f"{server}/api/runs/live/metrics", timeout=30).read())["records"]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    # the page polls every 2 s: it ends showing every step the API has, and the same last loss
    page.wait_for_function(
        f"() => Number(document.querySelector('#curves polyline[data-series=train_loss]').dataset.count) == {len(losses)}",
        timeout=30_000,
    )
    assert len(losses) > first
    assert float(line.get_attribute("data-last")) == losses[-1]


@pytest.mark.parametrize(
    "prompt, fields, message",
    [
        ("to be ¤", {}, "never seen"),
        ("to be", {"max_new_tokens": 10**9}, "max_new_tokens"),
        ("to be", {"top_p": 2}, "top_p"),
    ],
)
def test_bad_input_shows_a_readable_message_and_the_server_stays_up(page, prompt, fields, message):
    open_run(page)
    generate(page, prompt, **fields)
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert message in error.inner_text() and "Traceback" not in error.inner_text()
    page.reload()
    page.locator('#runs-table tr[data-name="shakespeare"]').wait_for()  # still serving
