"""The step slider, play, the guide and the tour, in Chromium against a real server; and hostile
requests about `step` sent from the page."""

import json
import urllib.request

import pytest

from .test_page import CHROMIUM, browser, open_run, page, screenshot, served, server  # noqa: F401

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install -y chromium)")


def api(server, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{server}{path}", data=data, headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=60).read())


def inspect_prompt(page, prompt="to be or not"):
    page.fill("#prompt", prompt)
    page.click("#inspect-button")
    page.wait_for_selector("#inspect:not([hidden])")


def move_slider(page, index):
    page.eval_on_selector(
        "#step-slider", "(s, i) => { s.value = i; s.dispatchEvent(new Event('input', { bubbles: true })); }", index
    )


def test_the_slider_shows_the_chosen_steps_numbers(page, server):
    steps = api(server, "/api/runs/shakespeare/snapshots")["steps"]
    assert len(steps) >= 5 and steps == sorted(steps)
    open_run(page)
    page.wait_for_selector("#steps:not([hidden])")
    slider = page.locator("#step-slider")
    assert slider.get_attribute("data-steps") == ",".join(map(str, steps)) and slider.get_attribute("max") == str(
        len(steps)
    )
    assert slider.get_attribute("data-step") == "latest"
    inspect_prompt(page)
    for index in (1, 3):
        step = steps[index]
        move_slider(page, index)
        page.wait_for_selector(f'#inspect[data-step="{step}"]')
        page.wait_for_selector(f'#embeddings[data-step="{step}"]')
        expected = api(
            server, "/api/runs/shakespeare/inspect", {"prompt": "to be or not", "step": step, "temperature": 0.8}
        )
        lens = page.locator("#logit-lens tbody tr").last.locator("td")
        shown = [float(p) for p in lens.evaluate_all("cells => cells.map(c => c.dataset.prob)")]
        assert shown == expected["logit_lens"]["top_prob"][-1]
        raw = page.locator('.stage[data-stage="raw"] .bar-row').evaluate_all(
            "rows => rows.map(r => [r.dataset.token, Number(r.dataset.prob)])"
        )
        last = expected["stages"]["positions"][-1]["candidates"]
        assert raw == [[c["token"], c["probs"][0]] for c in last]
        heads = page.locator('.head-panel[data-layer="0"][data-head="0"] .w').evaluate_all(
            "spans => spans.map(s => Number(s.dataset.weight))"
        )
        assert heads == expected["attention"][0][0][-1]
        points = api(server, f"/api/runs/shakespeare/embeddings?step={step}")
        first = page.locator("#embeddings svg text[data-label]").first.get_attribute("data-label")
        assert first == points["labels"][0]
        assert page.locator(f'#curves svg[data-title="loss"] line[data-marker-step="{step}"]').count() == 1
        assert slider.get_attribute("data-step") == str(step)
        assert f"show step {step:,}" in page.locator("#generate-note").inner_text()
    # the steps differ: the page shows another model at each
    early = api(server, "/api/runs/shakespeare/inspect", {"prompt": "to be or not", "step": steps[0]})
    assert early["logit_lens"]["top_prob"] != expected["logit_lens"]["top_prob"]
    move_slider(page, len(steps))
    page.wait_for_selector('#inspect[data-step="latest"]')
    assert page.locator("#curves line[data-marker-step]").count() == 0
    assert page.locator("#generate-note").inner_text() == ""
    screenshot(page, "step_slider", "#steps")


def test_play_walks_through_the_steps(page, server):
    steps = api(server, "/api/runs/shakespeare/snapshots")["steps"]
    open_run(page)
    page.wait_for_selector("#steps:not([hidden])")
    inspect_prompt(page, "to be")
    page.click("#play")  # at the latest weights: it starts again from the first snapshot
    for step in steps[:3]:
        page.wait_for_selector(f'#step-slider[data-step="{step}"]', timeout=20_000)
        page.wait_for_selector(f'#inspect[data-step="{step}"]', timeout=20_000)
    page.click("#play")  # pause
    page.wait_for_function("() => document.querySelector('#play').textContent.includes('play')")
    held = page.locator("#step-slider").get_attribute("data-step")
    page.wait_for_timeout(1500)
    assert page.locator("#step-slider").get_attribute("data-step") == held


def test_every_view_has_its_guide(page):
    open_run(page)
    inspect_prompt(page)
    page.wait_for_selector("#embeddings:not([hidden])")
    guide = page.evaluate("GUIDE")
    for key in ("runs", "generate", "steps", "next_token", "attention", "logit_lens", "embeddings"):
        panel = page.locator(f'details.guide[data-guide="{key}"]')
        assert not panel.locator(".guide-what").is_visible()
        panel.locator("summary").click()
        assert panel.locator(".guide-what").inner_text() == guide[key]["what"]
        assert panel.locator(".guide-notice").inner_text() == guide[key]["notice"]
        assert panel.locator(".guide-try").inner_text() == guide[key]["try"]
        sentences = guide[key]["what"].count(". ") + 1
        assert 2 <= sentences <= 4, key
    screenshot(page, "guide", 'section[data-tour="steps"]')


def test_the_tour_walks_the_views_and_is_remembered(page):
    assert "new" in page.locator("#tour-button").get_attribute("class")  # offered on a first visit
    page.click("#tour-button")
    tour = page.locator("#tour")
    tour.wait_for()
    order = page.evaluate("TOUR")
    guide = page.evaluate("GUIDE")
    for i, key in enumerate(order):  # the tour opens a run and inspects its prompt where a view needs it
        page.wait_for_selector(f'#tour[data-key="{key}"]')
        assert tour.locator(".tour-count").inner_text() == f"{i + 1} of {len(order)}"
        assert tour.locator(".tour-title").inner_text() == guide[key]["title"]
        assert page.locator(f'[data-tour="{key}"]').get_attribute("class").endswith("tour-focus")
        if i == 3:
            screenshot(page, "tour")
        if i < len(order) - 1:
            page.click("#tour-next")
    page.click("#tour-back")
    page.wait_for_selector(f'#tour[data-key="{order[-2]}"]')
    page.reload()  # mid-tour: it goes on where it was
    page.wait_for_selector(f'#tour[data-key="{order[-2]}"]')
    page.click("#tour-close")
    assert tour.is_hidden() and page.locator(".tour-focus").count() == 0
    page.reload()
    page.locator('#runs-table tr[data-name="shakespeare"]').wait_for()
    page.wait_for_timeout(500)
    assert tour.is_hidden() and "new" not in (page.locator("#tour-button").get_attribute("class") or "")


HOSTILE_BODIES = [-1, -(10**9), 10**30, 2**63, "5", "latest", "", 5.5, 1e300, [5], [], {"step": 5}, True, False, 7]
HOSTILE_QUERIES = [
    "-1",
    "abc",
    "1.5",
    "1e3",
    "0x10",
    "",
    "%00",
    "99999999999999999999999999",
    "[1]",
    "true",
    "7",
    "5;6",
]


def test_hostile_step_requests_get_a_4xx_json_error_and_the_server_keeps_serving(page, server):
    steps = api(server, "/api/runs/shakespeare/snapshots")["steps"]
    assert 7 not in steps  # 7 is no snapshot of this run
    answers = page.evaluate(
        """async ([bodies, queries]) => {
            const out = [];
            for (const step of bodies) {
                const r = await fetch('/api/runs/shakespeare/inspect', { method: 'POST',
                    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: 'to be', step }) });
                out.push([r.status, await r.json()]);
            }
            for (const q of queries) {
                const r = await fetch('/api/runs/shakespeare/embeddings?step=' + q);
                out.push([r.status, await r.json()]);
            }
            const raw = await fetch('/api/runs/shakespeare/inspect', { method: 'POST',
                headers: { 'Content-Type': 'application/json' }, body: '{"prompt": "to be", "step": 1e999}' });
            out.push([raw.status, await raw.json()]);
            return out;
        }""",
        [HOSTILE_BODIES, HOSTILE_QUERIES],
    )
    assert len(answers) >= 20
    for status, body in answers:
        assert 400 <= status < 500 and isinstance(body.get("error"), str) and body["error"], (status, body)
    not_a_snapshot = answers[len(HOSTILE_BODIES) - 1]
    assert not_a_snapshot[0] == 400 and "nearest" in not_a_snapshot[1]["error"]
    nearest = sorted(sorted(steps, key=lambda s: (abs(s - 7), s))[:3])
    assert f"nearest are at steps {', '.join(map(str, nearest))}" in not_a_snapshot[1]["error"]
    assert answers[4][0] == 422  # a string is the wrong type
    ok = api(server, "/api/runs/shakespeare/inspect", {"prompt": "to be", "step": steps[0]})
    assert ok["step"] == steps[0] and ok["tokens"]  # still serving
