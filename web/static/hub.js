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

// --- try-it form: fields from the input schema (web/tryit.py), the answer, inline feedback ----
// Each .try-field is one input: scalar, vector (a row of fields), json or image (a file turned into
// the tensor here, next to its JSON). The answer names classes through the model's labels; a 422
// names the input it is about ("inputs.<name>: ..."), and is shown beside that field.

const TOP_K = 5;
const MAX_ROWS_SHOWN = 10;

function tryFields(form) { return [...form.querySelectorAll(".try-field")]; }

function leafOf(input, box) {
  if (box.dataset.dtype === "string") return input.value;
  const text = input.value.trim();
  const name = input.dataset.label || box.dataset.field;
  if (text === "") throw new Error(name + ": enter a number.");
  const value = Number(text);
  if (!Number.isFinite(value)) throw new Error(name + ": " + JSON.stringify(text) + " is not a number.");
  return value;
}

function nested(value, levels) {
  for (let i = 0; i < levels; i++) value = [value];
  return value;
}

function fieldValue(box) {
  const kind = box.dataset.kind, parts = [...box.querySelectorAll("[data-part]")];
  if (kind === "json" || kind === "image") {
    const text = parts[0].value.trim();
    if (text === "") throw new Error(box.dataset.field + ": write a value as JSON, such as [[1.0, 2.0]].");
    try { return JSON.parse(text); } catch (e) {
      throw new Error(box.dataset.field + ": not valid JSON (" + e.message + ").");
    }
  }
  const nest = Number(box.dataset.nest), batch = box.dataset.batch === "1";
  const value = kind === "vector" ? parts.map((p) => leafOf(p, box)) : leafOf(parts[0], box);
  return nested(value, (kind === "vector" ? nest - 1 : nest) + (batch ? 1 : 0));
}

function markField(box, message) {
  const error = box.querySelector(".field-error");
  error.textContent = message;
  error.hidden = !message;
  for (const control of box.querySelectorAll("[data-part], input[data-image]")) {
    if (message) control.setAttribute("aria-invalid", "true"); else control.removeAttribute("aria-invalid");
  }
}

function readInputs(form) {
  const inputs = {}, problems = [];
  for (const box of tryFields(form)) {
    markField(box, "");
    try { inputs[box.dataset.field] = fieldValue(box); } catch (e) { problems.push([box, e.message]); }
  }
  return { inputs: inputs, problems: problems };
}

function fieldOfError(form, message) {
  // The field whose input the message names: the longest name, as names may hold dots and colons.
  let best = null;
  for (const box of tryFields(form)) {
    const name = box.dataset.field;
    if (message.startsWith("inputs." + name + ":") && (!best || name.length > best.dataset.field.length)) best = box;
  }
  return best;
}

function showProblems(form, problems) {
  const byField = new Map();
  for (const [box, message] of problems) byField.set(box, [...(byField.get(box) || []), message]);
  for (const [box, messages] of byField) markField(box, messages.join(" "));
  const first = problems.length ? problems[0][0].querySelector("[aria-invalid]") : null;
  if (first) first.focus();
}

function showStatus(text, ok) {
  $("try-result").hidden = false;
  const status = $("try-status");
  status.textContent = text;
  status.classList.toggle("bad", !ok);
}

async function predict(form) {
  const { inputs, problems } = readInputs(form);
  $("try-feedback").hidden = true;
  $("try-answer").replaceChildren();
  if (problems.length) {
    showProblems(form, problems);
    showStatus("Fix the marked " + (problems.length === 1 ? "field" : "fields") + "; nothing was sent.", false);
    $("try-raw").hidden = true;
    return;
  }
  showStatus("Predicting…", true);
  const reply = await postJson(form.dataset.url, { inputs: inputs });
  $("try-raw").hidden = false;
  $("try-reply").textContent = JSON.stringify(reply.data, null, 2);
  if (!reply.ok) {
    const errors = (reply.data.errors || []).map((m) => [fieldOfError(form, m), m]);
    showProblems(form, errors.filter(([box]) => box));
    const rest = errors.filter(([box]) => !box).map(([, m]) => m);
    showStatus("HTTP " + reply.status + ": " + ([reply.data.error, ...rest].filter(Boolean).join(" ") || "the prediction failed"), false);
    return;
  }
  showStatus("Prediction " + reply.data.id + " · " + reply.data.latency_ms + " ms", true);
  $("try-reply").textContent = JSON.stringify(reply.data.outputs, null, 2);
  showAnswer(reply.data.outputs, JSON.parse(form.dataset.labels || "[]"));
  offerFeedback(form, reply.data.id);
}

// --- the answer: class names and top-k -------------------------------------------------------

function isNumberRow(row) { return Array.isArray(row) && row.length > 1 && row.every((x) => typeof x === "number"); }

function scoreRows(value) {
  if (isNumberRow(value)) return [value];
  return Array.isArray(value) && value.length && value.every(isNumberRow) ? value : null;
}

function scoresOf(outputs, labels) {
  // The output that holds a score per class: as many as the labels (without labels, one named like
  // scores or summing to 1 per row), preferably named like one.
  let found = null;
  for (const [name, value] of Object.entries(outputs)) {
    const rows = scoreRows(value), named = /prob|score|logit|softmax/i.test(name);
    if (!rows) continue;
    const fits = labels.length ? rows[0].length === labels.length : named || rows.every(looksLikeProbabilities);
    if (fits && (!found || named)) found = rows;
  }
  return found;
}

function labelRows(value) {
  if (!Array.isArray(value)) return [value];
  return value.map((x) => (Array.isArray(x) && x.length === 1 ? x[0] : x));
}

function className(value, labels) {
  if (typeof value === "string") return value;
  if (Number.isInteger(value) && labels[value] !== undefined) return labels[value];
  return Number.isInteger(value) ? "class " + value : null;
}

function looksLikeProbabilities(row) {
  const sum = row.reduce((a, b) => a + b, 0);
  return row.every((x) => x >= 0 && x <= 1) && Math.abs(sum - 1) < 0.01;
}

function describe(outputs, labels) {
  // [{name, top: [{name, score}], probabilities}] per row, or [] when the answer names no class.
  if (!outputs || typeof outputs !== "object" || Array.isArray(outputs)) return [];
  const scores = scoresOf(outputs, labels);
  const key = Object.keys(outputs).find((k) => /^(label|labels|class|classes|prediction)$/i.test(k));
  if (!scores && !(key && labels.length) && !(key && typeof labelRows(outputs[key])[0] === "string")) return [];
  const named = key ? labelRows(outputs[key]) : scores.map((row) => row.indexOf(Math.max(...row)));
  return named.slice(0, MAX_ROWS_SHOWN).map((value, i) => {
    const row = scores && scores[i];
    const top = row ? row.map((score, j) => ({ name: className(j, labels), score: score }))
      .sort((a, b) => b.score - a.score).slice(0, TOP_K) : [];
    return { name: className(value, labels), top: top, probabilities: Boolean(row) && looksLikeProbabilities(row) };
  });
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function topList(row) {
  const list = element("ol", undefined, "topk");
  list.setAttribute("aria-label", "Top " + row.top.length + (row.probabilities ? " classes by probability" : " classes by score"));
  for (const { name, score } of row.top) {
    const item = element("li");
    item.append(element("span", name, "topk-name"));
    if (row.probabilities) {
      const bar = element("meter");
      Object.assign(bar, { min: 0, max: 1, value: score });
      bar.setAttribute("aria-hidden", "true");
      item.append(bar, element("span", (score * 100).toFixed(1) + "%", "topk-score"));
    } else item.append(element("span", String(Number(score.toPrecision(4))), "topk-score"));
    list.append(item);
  }
  return list;
}

function showAnswer(outputs, labels) {
  const rows = describe(outputs, labels), box = $("try-answer");
  box.replaceChildren();
  rows.forEach((row, i) => {
    const line = element("p", undefined, "answer");
    line.append(element("span", rows.length > 1 ? "Row " + (i + 1) + ": " : "Answer: ", "hint"), element("strong", row.name || "—"));
    box.append(line);
    if (row.top.length) box.append(topList(row));
  });
  $("try-raw").open = rows.length === 0;  // without class names the raw answer is the answer
}

// --- examples and images ---------------------------------------------------------------------

function fillExample(form, index) {
  const values = JSON.parse(form.dataset.examples)[index].values;
  for (const box of tryFields(form)) {
    const value = values[box.dataset.id], parts = [...box.querySelectorAll("[data-part]")];
    parts.forEach((part, i) => { part.value = Array.isArray(value) ? (value[i] ?? "") : (value ?? ""); });
    markField(box, "");
    const note = box.querySelector(".image-note");
    if (note) note.textContent = "";
  }
}

function pixel(rgba, i, channel, channels) {
  if (channels === 1) return (0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2]) / 255;
  return rgba[i + channel] / 255;
}

function imageTensor(rgba, spec) {
  // [C][H][W] (NCHW) or [H][W][C] (NHWC), values 0..1 rounded to 4 places.
  const { channels, height, width, layout } = spec, at = (y, x, c) => Math.round(pixel(rgba, (y * width + x) * 4, c, channels) * 1e4) / 1e4;
  const range = (n, f) => Array.from({ length: n }, (_, i) => f(i));
  if (layout === "NCHW") return range(channels, (c) => range(height, (y) => range(width, (x) => at(y, x, c))));
  return range(height, (y) => range(width, (x) => range(channels, (c) => at(y, x, c))));
}

function shapeOf(value) {
  const shape = [];
  for (let v = value; Array.isArray(v); v = v[0]) shape.push(v.length);
  return shape;
}

async function loadImage(box, picker) {
  const file = picker.files[0], note = box.querySelector(".image-note");
  if (!file) return;
  const spec = { layout: picker.dataset.layout, channels: Number(picker.dataset.channels), height: Number(picker.dataset.height), width: Number(picker.dataset.width) };
  markField(box, "");
  let bitmap;
  try { bitmap = await createImageBitmap(file); } catch (e) {
    markField(box, box.dataset.field + ": " + file.name + " is not an image this browser can read (use PNG, JPEG, GIF, WebP or BMP).");
    note.textContent = "";
    return;
  }
  const canvas = element("canvas");
  Object.assign(canvas, { width: spec.width, height: spec.height });
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0, spec.width, spec.height);
  const tensor = nested(imageTensor(context.getImageData(0, 0, spec.width, spec.height).data, spec), box.dataset.batch === "1" ? 1 : 0);
  const want = JSON.parse(box.dataset.shape), got = shapeOf(tensor);
  if (want.length !== got.length || want.some((d, i) => d !== -1 && d !== null && d !== got[i])) {
    markField(box, box.dataset.field + ": the image became shape [" + got + "], but the model takes [" + want + "].");
    return;
  }
  box.querySelector("[data-part]").value = JSON.stringify(tensor);
  note.textContent = file.name + " (" + bitmap.width + " × " + bitmap.height + ") as shape [" + got.join(", ") + "]: resized to " + spec.width + " × " + spec.height + ", " + (spec.channels === 1 ? "greyscale" : "RGB") + ", scaled 0..1.";
}

// --- inline feedback on the answer -----------------------------------------------------------

function offerFeedback(form, predictionId) {
  const box = $("try-feedback");
  box.reset();
  box.hidden = false;
  box.dataset.url = form.dataset.feedbackUrl.replace("PREDICTION_ID", encodeURIComponent(predictionId));
  delete box.dataset.correct;
  $("try-feedback-prediction").value = predictionId;
  $("try-feedback-status").textContent = "";
  for (const button of box.querySelectorAll("button[name=correct]")) button.setAttribute("aria-pressed", "false");
  const hidden = $("feedback-prediction");  // the feedback section's form: about this prediction too
  if (hidden) {
    hidden.value = predictionId;
    $("feedback-about").textContent = "About prediction " + predictionId + ".";
  }
}

function feedbackBody(box, submitter) {
  if (submitter && submitter.name === "correct") {
    box.dataset.correct = submitter.value;
    for (const b of box.querySelectorAll("button[name=correct]")) b.setAttribute("aria-pressed", String(b === submitter));
  }
  const body = {}, data = new FormData(box);
  if (box.dataset.correct) body.correct = box.dataset.correct === "yes";
  if ((data.get("label") || "").trim()) body.label = data.get("label").trim();
  if (data.get("rating")) body.rating = Number(data.get("rating"));
  if ((data.get("comment") || "").trim()) body.comment = data.get("comment").trim();
  return body;
}

async function sendFeedback(box, submitter) {
  const body = feedbackBody(box, submitter), status = $("try-feedback-status");
  if (!Object.keys(body).length) { status.textContent = "Choose right or wrong, a label or a rating, or write a comment."; return; }
  status.textContent = "Sending…";
  const reply = await postJson(box.dataset.url, body);
  if (!reply.ok) { status.textContent = reply.data.error || "Not recorded (HTTP " + reply.status + ")."; return; }
  status.textContent = "Thank you: feedback #" + reply.data.id + " was recorded.";
  await refreshFeedbackCounts(box.dataset.scorecard);
}

function percent(value) { return value == null ? "—" : (value * 100).toFixed(1) + "%"; }

const FEEDBACK_STATS = {
  "feedback-count": (f) => String(f.count),
  "feedback-judged": (f) => f.correct + " right, " + f.incorrect + " wrong",
  "accuracy": (f) => percent(f.accuracy),
  "accuracy-ci": (f) => (f.accuracy == null ? "no judged predictions" : "95% CI " + percent(f.accuracy_low) + " – " + percent(f.accuracy_high)),
  "mean-rating": (f) => (f.mean_rating == null ? "—" : f.mean_rating.toFixed(2)),
  "ratings": (f) => "of 5, " + f.ratings + " ratings",
};

async function refreshFeedbackCounts(url) {
  try {
    const reply = await fetch(url, { headers: { "Accept": "application/json" } });
    const feedback = (await reply.json()).feedback;
    for (const node of document.querySelectorAll("[data-stat]")) {
      const show = FEEDBACK_STATS[node.dataset.stat];
      if (show) node.textContent = show(feedback);
    }
  } catch (e) { /* the counts stay as they were; the thank-you is already shown */ }
}

function setupTryIt() {
  const form = $("try-it");
  if (!form) return;
  form.addEventListener("submit", (event) => { event.preventDefault(); predict(form); });
  for (const group of document.querySelectorAll(".try-examples")) group.hidden = false;  // buttons need JS
  for (const button of document.querySelectorAll("button[data-example]")) {
    button.addEventListener("click", () => fillExample(form, Number(button.dataset.example)));
  }
  for (const picker of form.querySelectorAll("input[data-image]")) {
    picker.addEventListener("change", () => loadImage(picker.closest(".try-field"), picker));
  }
  const box = $("try-feedback");
  box.addEventListener("submit", (event) => { event.preventDefault(); sendFeedback(box, event.submitter); });
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
    button.hidden = false;  // without JavaScript the button stays hidden: the <pre> text is selectable
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

function followBuild(url, inFlight, show = showBuild) {
  const tick = async () => {
    try {
      const reply = await fetch(url, { headers: { "Accept": "application/json" } });
      const build = await reply.json();
      show(build);
      if (inFlight.includes(build.status)) { setTimeout(tick, 1000); return; }
      const note = $("build-polling");
      if (note) note.textContent = "The build ended.";
      const cancel = $("build-cancel");
      if (cancel) cancel.closest("form").remove();
    } catch (e) { setTimeout(tick, 5000); }
  };
  setTimeout(tick, 1000);
}

// --- model page: the latest build's log inline, followed while the build runs -----------------

const LOG_TAIL_LINES = 80;  // as hub/buildhistory.py

function showLatestBuild(build) {
  const status = $("latest-build-status");
  status.textContent = build.status;
  status.className = "state state-" + build.status;
  const lines = (build.log || "(no output yet)").replace(/\n$/, "").split("\n");
  $("latest-build-log").textContent = lines.slice(-LOG_TAIL_LINES).join("\n");
}

function setupLatestBuild() {
  const box = document.querySelector("#latest-build[data-build-poll]");
  if (box) followBuild(box.dataset.buildPoll, JSON.parse(box.dataset.buildInFlight), showLatestBuild);
}

document.addEventListener("DOMContentLoaded", () => {
  setupTryIt();
  setupCopy();
  setupVersionPicker();
  setupLatestBuild();
  const main = document.querySelector("main[data-build-poll]");
  if (main) followBuild(main.dataset.buildPoll, JSON.parse(main.dataset.buildInFlight));
  document.documentElement.dataset.js = "ready";  // the page's scripts ran (tests read this)
});

// --- catalog: search as you type ---------------------------------------------------------------
// The catalog's form works without JavaScript (a plain GET). With it: typing in the search box
// (CATALOG_DEBOUNCE_MS after the last key), picking in a select or submitting fetches the page for
// the form's values and swaps in its results and the facet counts; the address follows
// (history.replaceState), written as the server writes its links (web/catalog_page.py).

const CATALOG_DEBOUNCE_MS = 300;
let catalogRequest = null;

function catalogUrl(form) {
  const values = new FormData(form);
  const params = new URLSearchParams();
  for (const key of form.dataset.order.split(" ")) {
    const value = String(values.get(key) || "").trim();
    if (value && !(key === "sort" && value === form.dataset.defaultSort)) params.append(key, value);
  }
  const query = params.toString();
  return form.action.split("?")[0] + (query ? "?" + query : "");
}

function adoptChildren(from) { return [...from.childNodes].map((node) => document.adoptNode(node)); }

function swapCatalog(form, page) {
  const fresh = page.getElementById("catalog-results");
  if (!fresh) return false;
  const results = $("catalog-results");
  results.replaceChildren(...adoptChildren(fresh));
  const summary = results.querySelector("p.count, p.empty");
  $("catalog-status").textContent = summary ? summary.textContent : "";  // read out by screen readers
  for (const select of form.querySelectorAll("select[data-facet]")) {
    const next = page.querySelector('select[data-facet="' + select.dataset.facet + '"]');
    if (!next || document.activeElement === select) continue;
    select.replaceChildren(...[...next.options].map((o) => new Option(o.text, o.value, o.defaultSelected, o.defaultSelected)));
  }
  return true;
}

async function refreshCatalog(form) {
  const url = catalogUrl(form);
  if (catalogRequest) catalogRequest.abort();
  const request = catalogRequest = new AbortController();
  const results = $("catalog-results");
  results.setAttribute("aria-busy", "true");
  try {
    const reply = await fetch(url, { headers: { "Accept": "text/html" }, signal: request.signal });
    const page = new DOMParser().parseFromString(await reply.text(), "text/html");
    if (!swapCatalog(form, page)) { window.location.assign(url); return; }  // the full page says why
    history.replaceState(null, "", url);
  } catch (e) {
    if (e.name !== "AbortError") window.location.assign(url);  // fall back to the plain GET
  } finally {
    if (catalogRequest === request) { catalogRequest = null; results.removeAttribute("aria-busy"); }
  }
}

function setupCatalogSearch() {
  const form = $("catalog-form");
  if (!form) return;
  let timer = null;
  const now = () => { clearTimeout(timer); refreshCatalog(form); };
  form.addEventListener("input", (event) => {
    if (event.target.name !== "q") return;
    clearTimeout(timer);
    timer = setTimeout(() => refreshCatalog(form), CATALOG_DEBOUNCE_MS);
  });
  form.addEventListener("change", (event) => { if (event.target.tagName === "SELECT") now(); });
  form.addEventListener("submit", (event) => { event.preventDefault(); now(); });
}

document.addEventListener("DOMContentLoaded", setupCatalogSearch);
