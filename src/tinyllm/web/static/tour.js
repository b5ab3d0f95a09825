// The guide in the page: "What is this?" under each view (the words are in guide.js), and a tour
// that walks a first-time visitor through the views in order, on whatever run is open. Where the
// tour stands is remembered in this browser (localStorage), so a reload continues it.
"use strict";

const TOUR_KEY = "tinyllm.tour";  // {"index": n} while open, {"done": true} once finished or closed

function guidePanel(key, words) {
  return el("details", { class: "guide", "data-guide": key },
    el("summary", { text: "What is this?" }),
    el("p", { class: "guide-what", text: words.what }),
    el("h4", { text: "What to notice" }), el("p", { class: "guide-notice", text: words.notice }),
    el("h4", { text: "Try" }), el("p", { class: "guide-try", text: words.try }));
}

function fillGuides() {
  document.querySelectorAll(".guide-slot").forEach((slot) => {
    const key = slot.dataset.guide;
    if (GUIDE[key]) slot.replaceChildren(guidePanel(key, GUIDE[key]));
  });
}

// ---- the tour ----

function tourStops() {  // the page's views, then the open run's task views (their words come from the task)
  return [...TOUR.map((key) => ({ key, ...GUIDE[key] })), ...state.views.map((v) => ({ key: v.name, ...v }))];
}

function remember(value) {
  try { localStorage.setItem(TOUR_KEY, JSON.stringify(value)); } catch (e) { /* private mode: not remembered */ }
}

function remembered() {
  try { return JSON.parse(localStorage.getItem(TOUR_KEY)) || {}; } catch (e) { return {}; }
}

async function showWhatTheStopNeeds(key) {
  // the tour shows each view on the open run: open one, and inspect its prompt, where that is needed
  if (!state.run) {
    const first = document.querySelector("#runs-table tbody tr");
    if (first) first.click();
  }
  if (!state.run) return;
  const needsInspect = ["steps", "next_token", "attention", "logit_lens"].includes(key);
  if (needsInspect && state.inspected === null && state.summary.has_weights) await inspect($("#prompt").value);
}

async function tourTo(index) {
  const stops = tourStops();
  index = Math.max(0, Math.min(index, stops.length - 1));
  const stop = stops[index];
  remember({ index });
  try { await showWhatTheStopNeeds(stop.key); } catch (e) { showError(e.message); }
  const box = $("#tour");
  box.dataset.index = index;
  box.dataset.key = stop.key;
  box.querySelector(".tour-count").textContent = `${index + 1} of ${stops.length}`;
  box.querySelector(".tour-title").textContent = stop.title;
  box.querySelector(".tour-what").textContent = stop.what;
  box.querySelector(".tour-notice").textContent = stop.notice ? `Notice: ${stop.notice}` : "";
  $("#tour-back").disabled = index === 0;
  $("#tour-next").textContent = index === stops.length - 1 ? "Finish" : "Next";
  box.hidden = false;
  document.querySelectorAll(".tour-focus").forEach((node) => node.classList.remove("tour-focus"));
  const target = document.querySelector(`[data-tour="${stop.key}"]`);
  if (target) {
    target.classList.add("tour-focus");
    target.scrollIntoView({ block: "center" });
  }
}

function closeTour() {
  $("#tour").hidden = true;
  document.querySelectorAll(".tour-focus").forEach((node) => node.classList.remove("tour-focus"));
  remember({ done: true });
  $("#tour-button").classList.remove("new");
}

$("#tour-button").addEventListener("click", () => tourTo(0));
$("#tour-back").addEventListener("click", () => tourTo(Number($("#tour").dataset.index) - 1));
$("#tour-next").addEventListener("click", () => {
  const index = Number($("#tour").dataset.index);
  if (index >= tourStops().length - 1) closeTour(); else tourTo(index + 1);
});
$("#tour-close").addEventListener("click", closeTour);

fillGuides();
const saved = remembered();
if (!saved.done) $("#tour-button").classList.add("new");  // a first visit: the tour is offered
if (Number.isInteger(saved.index)) runsLoaded.then(() => tourTo(saved.index));  // a reload mid-tour continues it
