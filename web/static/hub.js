// aidhub: small progressive enhancements. Every value is written with textContent, never as HTML.
"use strict";

function $(id) { return document.getElementById(id); }

async function postJson(url, body) {
  const reply = await fetch(url, {
    method: "POST",
    headers: {
      "Content-Type": "application/json", "Accept": "application/json",
      "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content,
    },
    body: JSON.stringify(body),
  });
  let data = null;
  try { data = await reply.json(); } catch (e) { data = { error: "The hub did not answer with JSON (HTTP " + reply.status + ")." }; }
  return { ok: reply.ok, status: reply.status, data: data };
}

// --- try-it form ------------------------------------------------------------------------------

function readInputs(form) {
  const inputs = {};
  for (const field of form.querySelectorAll("textarea[data-input]")) {
    const name = field.dataset.input;
    try { inputs[name] = JSON.parse(field.value); } catch (e) {
      throw new Error(name + ": not valid JSON (" + e.message + "). Write a value such as [[1.0, 2.0]].");
    }
  }
  return inputs;
}

function showReply(ok, statusText, body) {
  $("try-result").hidden = false;
  const status = $("try-status");
  status.textContent = statusText;
  status.classList.toggle("bad", !ok);
  $("try-reply").textContent = body ? JSON.stringify(body, null, 2) : "";
}

function offerFeedback(form, predictionId) {
  const url = form.dataset.feedbackUrl.replace("PREDICTION_ID", encodeURIComponent(predictionId));
  const box = $("try-feedback");
  box.hidden = false;
  $("try-feedback-status").textContent = "";
  box.dataset.url = url;
  const hidden = $("feedback-prediction");
  if (hidden) {
    hidden.value = predictionId;
    $("feedback-about").textContent = "About prediction " + predictionId + ".";
  }
}

async function predict(form) {
  let inputs;
  try { inputs = readInputs(form); } catch (e) { showReply(false, e.message, null); return; }
  showReply(true, "Predicting…", null);
  $("try-feedback").hidden = true;
  const reply = await postJson(form.dataset.url, { inputs: inputs });
  if (!reply.ok) {
    showReply(false, "HTTP " + reply.status + ": " + (reply.data.error || "the prediction failed"), reply.data);
    return;
  }
  showReply(true, "Prediction " + reply.data.id + " in " + reply.data.latency_ms + " ms", reply.data.outputs);
  offerFeedback(form, reply.data.id);
}

async function quickFeedback(button) {
  const box = $("try-feedback");
  const reply = await postJson(box.dataset.url, { correct: button.dataset.correct === "true" });
  $("try-feedback-status").textContent = reply.ok ? "Thank you, recorded." : (reply.data.error || "Not recorded.");
}

function setupTryIt() {
  const form = $("try-it");
  if (!form) return;
  form.addEventListener("submit", (event) => { event.preventDefault(); predict(form); });
  for (const button of document.querySelectorAll("#try-feedback button[data-correct]")) {
    button.addEventListener("click", () => quickFeedback(button));
  }
}

// --- small helpers: copy buttons, version picker --------------------------------------------

function copyText(text, button) {
  const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  document.body.appendChild(area);
  area.select();
  document.execCommand("copy");
  area.remove();
  done();
}

function setupCopy() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", () => copyText($(button.dataset.copy).textContent, button));
  }
}

function setupVersionPicker() {
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
}

// --- build page: follow a running build ------------------------------------------------------

function when(value) { return value ? value.slice(0, 10) + " " + value.slice(11, 16) + " UTC" : "—"; }

function showBuild(build) {
  const status = $("build-status");
  status.textContent = build.status;
  status.className = "state state-" + build.status;
  $("build-started").textContent = when(build.started_at);
  $("build-finished").textContent = when(build.finished_at);
  $("build-seconds").textContent = build.seconds == null ? "—" : build.seconds.toFixed(1) + " s";
  $("build-log").textContent = build.log || "(no output yet)";
  const p = build.progress;
  $("build-progress").textContent = p.done + " of " + p.total + " steps done" + (p.step ? "; now: " + p.step : "");
  const rows = $("build-steps");
  rows.replaceChildren(...build.steps.map((step) => {
    const row = document.createElement("tr");
    const cells = [step.name, step.status, step.seconds == null ? "…" : step.seconds.toFixed(1) + " s"];
    for (const [i, text] of cells.entries()) {
      const cell = document.createElement("td");
      if (i === 1) {
        const badge = document.createElement("span");
        badge.className = "state state-" + text;
        badge.textContent = text;
        cell.append(badge);
      } else cell.textContent = text;
      row.append(cell);
    }
    return row;
  }));
}

function followBuild(url, inFlight) {
  const tick = async () => {
    try {
      const reply = await fetch(url, { headers: { "Accept": "application/json" } });
      const build = await reply.json();
      showBuild(build);
      if (inFlight.includes(build.status)) { setTimeout(tick, 1000); return; }
      const note = $("build-polling");
      if (note) note.textContent = "The build ended.";
      const cancel = $("build-cancel");
      if (cancel) cancel.closest("form").remove();
    } catch (e) { setTimeout(tick, 5000); }
  };
  setTimeout(tick, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  setupTryIt();
  setupCopy();
  setupVersionPicker();
  const main = document.querySelector("main[data-build-poll]");
  if (main) followBuild(main.dataset.buildPoll, JSON.parse(main.dataset.buildInFlight));
  document.documentElement.dataset.js = "ready";  // the page's scripts ran (tests read this)
});
