// The viewer: load texts, score an explanation, compare several, write one. State that
// can be shared (example, explanation(s), simulator, scorer, style) lives in the URL.

import * as api from "./api.js";
import { drawScores } from "./chart.js";
import { $, el, fmt, setStatus } from "./dom.js";
import { parseDatasets } from "./formats.js";
import { renderTexts } from "./tokens.js";

const state = {
  dataset: null, // {id, title, activations, suggestion, falseExplanations}
  pasted: [], // datasets found in the last paste or file
};

// -- small helpers ---------------------------------------------------------------

function tokenCount(activations) {
  return activations.reduce((n, t) => n + t.tokens.length, 0);
}

function errorText(err) {
  return err instanceof api.ServiceError && err.code ? `${err.message} (${err.code})` : String(err.message || err);
}

async function busy(work) {
  const buttons = document.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  document.body.dataset.busy = "1";
  try {
    return await work();
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    delete document.body.dataset.busy;
  }
}

function needTexts(status) {
  if (state.dataset) return true;
  setStatus(status, "load texts first (step 1)", "error");
  return false;
}

function intervalText(answer) {
  const iv = answer.score_interval;
  if (iv && Number.isFinite(iv.low) && Number.isFinite(iv.high)) {
    const level = Number.isFinite(iv.level) ? `${Math.round(iv.level * 100)}% ` : "";
    const method = iv.method ? ` · ${iv.method}` : "";
    return `${level}interval [${fmt(iv.low)}, ${fmt(iv.high)}]${method}`;
  }
  const reason = (iv && iv.reason) || answer.score_interval_reason;
  return typeof reason === "string" ? `no interval: ${reason}` : "";
}

function usageText(answer) {
  const u = answer.usage || {};
  const parts = [`${u.llm_calls ?? 0} LLM calls`, `${u.total_tokens ?? 0} tokens`];
  if (u.cache_hits) parts.push(`${u.cache_hits} cached`);
  if (u.cached_prompt_tokens) parts.push(`${u.cached_prompt_tokens} prompt tokens from the provider's cache`);
  if (Number.isFinite(u.estimated_cost_usd)) parts.push(`$${u.estimated_cost_usd.toFixed(4)}${u.estimated ? " (estimated)" : ""}`);
  else if (u.estimated) parts.push("estimated");
  return parts.join(" · ");
}

function scoredBy(answer) {
  const who = answer.simulator || answer.judge || {};
  const name = who.name || answer.scorer || "?";
  return who.model ? `${name} (${who.model})` : name;
}

// -- the URL ---------------------------------------------------------------------

function compareLines() {
  return $("#compare-input").value.split("\n").map((s) => s.trim()).filter(Boolean);
}

function writeUrl() {
  const params = new URLSearchParams();
  if (state.dataset && state.dataset.id) params.set("example", state.dataset.id);
  const explanation = $("#explanation").value.trim();
  if (explanation) params.set("explanation", explanation);
  for (const line of compareLines()) params.append("compare", line);
  for (const [key, id] of [["simulator", "#simulator"], ["scorer", "#scorer"], ["style", "#style"]]) {
    const select = $(id);
    if (select.value && select.value !== select.dataset.default) params.set(key, select.value);
  }
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
}

function choose(select, value) {
  if (value && [...select.options].some((o) => o.value === value)) select.value = value;
}

// -- 1 · texts -------------------------------------------------------------------

function useDataset(dataset) {
  state.dataset = dataset;
  // Answers about the previous texts would be read as answers about these.
  for (const id of ["#result", "#compare-result", "#prompt"]) {
    $(id).hidden = true;
    delete $(id).dataset.state;
  }
  $("#score").dataset.explanation = "";
  delete $("#prompt").dataset.tokens;
  const n = dataset.activations.length;
  setStatus($("#load-status"), `${dataset.title}: ${n} text${n === 1 ? "" : "s"}, ${tokenCount(dataset.activations)} tokens`, "ok");
  const box = $("#suggestion-box");
  box.hidden = !dataset.suggestion;
  $("#suggestion").textContent = dataset.suggestion || "";
  $("#compare-fill").hidden = !dataset.suggestion;
  document.body.dataset.loaded = dataset.id || "pasted";
  writeUrl();
}

async function loadExample(id) {
  const status = $("#load-status");
  setStatus(status, "loading…");
  try {
    const body = await api.example(id);
    $("#example").value = id;
    useDataset({
      id,
      title: body.title || id,
      activations: body.activations,
      suggestion: body.suggestion || "",
      falseExplanations: body.false_explanations || [],
    });
  } catch (err) {
    setStatus(status, errorText(err), "error");
  }
}

function loadPasted(raw) {
  const status = $("#load-status");
  try {
    state.pasted = parseDatasets(raw);
  } catch (err) {
    setStatus(status, err.message, "error");
    return;
  }
  const pick = $("#feature");
  pick.replaceChildren(...state.pasted.map((d, i) => el("option", { text: d.title, attrs: { value: i } })));
  $("#feature-pick").hidden = state.pasted.length < 2;
  const first = state.pasted.findIndex((d) => !d.title.endsWith("(all zero)"));
  pick.value = String(Math.max(0, first));
  $("#example").value = "";
  useDataset({ id: null, falseExplanations: [], ...state.pasted[Number(pick.value)] });
}

// -- 2 · score -------------------------------------------------------------------

function scoreRequest(explanation) {
  const body = { explanation, activations: state.dataset.activations };
  if ($("#simulator").value) body.simulator = $("#simulator").value;
  const scorer = $("#scorer").value;
  if (scorer && scorer !== "simulation") body.scorer = scorer;
  return body;
}

function showResult(answer, explanation) {
  const result = $("#result");
  result.hidden = false;
  const out = $("#score");
  out.textContent = answer.score === null || answer.score === undefined ? "undefined" : fmt(answer.score);
  out.dataset.score = answer.score === null || answer.score === undefined ? "" : String(answer.score);
  out.dataset.explanation = explanation;
  $("#interval").textContent = intervalText(answer);
  const metric = answer.metric ? `${answer.metric} · ` : "";
  const failures = (answer.failures || []).length;
  $("#result-meta").textContent =
    `${metric}${scoredBy(answer)}${answer.offline || (answer.simulator && answer.simulator.offline) ? " · offline" : ""} · ` +
    `${answer.texts_scored ?? "?"} texts scored${failures ? ` · ${failures} failed` : ""} · ${usageText(answer)}`;
  // The time varies from run to run: on hover, so that the view itself is reproducible.
  $("#result-meta").title = Number.isFinite(answer.elapsed_ms) ? `answered in ${answer.elapsed_ms} ms` : "";
  $("#result-h").textContent = `Result: “${explanation}”`;
  $("#legend-sim").hidden = !(answer.simulations || []).length;
  renderTexts($("#texts"), state.dataset.activations, answer);
  result.dataset.state = "done";
}

async function scoreNow() {
  const status = $("#score-status");
  if (!needTexts(status)) return;
  const explanation = $("#explanation").value.trim();
  if (!explanation) {
    setStatus(status, "write an explanation first", "error");
    return;
  }
  writeUrl();
  setStatus(status, "scoring…");
  await busy(async () => {
    try {
      const answer = await api.score(scoreRequest(explanation));
      showResult(answer, explanation);
      setStatus(status, "");
    } catch (err) {
      setStatus(status, errorText(err), "error");
    }
  });
}

// -- 3 · compare -----------------------------------------------------------------

async function compareAnswers(explanations) {
  const body = { explanations, activations: state.dataset.activations };
  if ($("#simulator").value) body.simulator = $("#simulator").value;
  try {
    const answer = await api.compare(body);
    return { results: answer.results, pairs: answer.pairs || [], via: "/compare" };
  } catch (err) {
    if (!(err instanceof api.ServiceError && (err.status === 404 || err.status === 405))) throw err;
  }
  // A service without /compare: one /score each, on the same texts.
  const results = [];
  for (const explanation of explanations) results.push(await api.score(scoreRequest(explanation)));
  return { results, pairs: [], via: "/score per explanation" };
}

function pairLabel(ref, explanations) {
  if (Number.isInteger(ref) && explanations[ref] !== undefined) return `“${explanations[ref]}”`;
  return `“${String(ref)}”`;
}

function showComparison(explanations, { results, pairs, via }) {
  const rows = explanations.map((explanation, i) => {
    const answer = results[i] || {};
    const iv = answer.score_interval;
    return {
      explanation,
      answer,
      score: Number.isFinite(answer.score) ? answer.score : null,
      interval: iv && Number.isFinite(iv.low) && Number.isFinite(iv.high) ? iv : null,
    };
  });
  rows.sort((a, b) => (b.score ?? -Infinity) - (a.score ?? -Infinity));
  const tbody = $("#compare-table tbody");
  tbody.replaceChildren();
  rows.forEach((row, i) => {
    const show = el("button", { className: "link", text: row.explanation, attrs: { type: "button", title: "show its tokens above" } });
    show.addEventListener("click", () => {
      $("#explanation").value = row.explanation;
      showResult(row.answer, row.explanation);
      writeUrl();
      $("#result").scrollIntoView();
    });
    tbody.append(
      el("tr", { attrs: { "data-score": row.score === null ? "" : String(row.score) } }, [
        el("td", { text: i + 1 }),
        el("td", {}, [show]),
        el("td", { className: "num", text: fmt(row.score) }),
        el("td", { className: "num", text: row.interval ? `[${fmt(row.interval.low)}, ${fmt(row.interval.high)}]` : "–" }),
        el("td", { className: "num", text: row.answer.texts_scored ?? "–" }),
      ]),
    );
  });
  drawScores($("#compare-chart"), rows);
  const list = $("#compare-pairs");
  list.replaceChildren(
    ...pairs.map((p) => {
      const ci = p.interval && Number.isFinite(p.interval.low) ? ` [${fmt(p.interval.low)}, ${fmt(p.interval.high)}]` : "";
      const pv = Number.isFinite(p.p_adjusted) ? ` · adjusted p ${fmt(p.p_adjusted)}` : Number.isFinite(p.p_value) ? ` · p ${fmt(p.p_value)}` : "";
      return el("li", { text: `${pairLabel(p.a, explanations)} − ${pairLabel(p.b, explanations)}: ${fmt(p.difference)}${ci}${pv}` });
    }),
  );
  const box = $("#compare-result");
  box.hidden = false;
  box.dataset.via = via;
  box.dataset.state = "done";
}

async function compareNow() {
  const status = $("#compare-status");
  if (!needTexts(status)) return;
  const explanations = compareLines();
  if (explanations.length < 2 || explanations.length > 10) {
    setStatus(status, `write 2 to 10 explanations, one per line (now ${explanations.length})`, "error");
    return;
  }
  writeUrl();
  setStatus(status, "comparing…");
  await busy(async () => {
    try {
      const outcome = await compareAnswers(explanations);
      showComparison(explanations, outcome);
      setStatus(status, `scored through ${outcome.via}`);
    } catch (err) {
      setStatus(status, errorText(err), "error");
    }
  });
}

// -- 4 · explain -----------------------------------------------------------------

function showPrompt(answer) {
  const box = $("#prompt");
  box.hidden = false;
  $("#prompt-summary").textContent =
    `${answer.prompt_tokens} prompt tokens · ${answer.texts_shown} texts shown · style ${answer.style} · ` +
    `backend ${answer.backend}${answer.model ? ` (${answer.model})` : ""}`;
  const messages = Array.isArray(answer.messages) ? answer.messages : [];
  $("#prompt-messages").replaceChildren(
    ...messages.map((m, i) =>
      el("details", { attrs: { open: i === messages.length - 1 ? "" : undefined } }, [
        el("summary", { text: `${m.role} · ${String(m.content).length} characters` }),
        el("pre", { text: m.content }),
      ]),
    ),
  );
  box.dataset.tokens = String(answer.prompt_tokens);
}

async function dryRun() {
  const status = $("#explain-status");
  if (!needTexts(status)) return;
  setStatus(status, "building the prompt…");
  await busy(async () => {
    try {
      const answer = await api.explain({ activations: state.dataset.activations, style: $("#style").value, dry_run: true });
      showPrompt(answer);
      setStatus(status, "");
    } catch (err) {
      setStatus(status, errorText(err), "error");
    }
  });
}

async function generate() {
  const status = $("#explain-status");
  if (!needTexts(status)) return;
  setStatus(status, "explaining…");
  let answer;
  await busy(async () => {
    try {
      answer = await api.explain({ activations: state.dataset.activations, style: $("#style").value });
    } catch (err) {
      setStatus(status, errorText(err), "error");
    }
  });
  if (!answer) return;
  setStatus(status, `${answer.backend}${answer.model ? ` (${answer.model})` : ""} wrote: “${answer.explanation}” · ${usageText(answer)}`, "ok");
  $("#explanation").value = answer.explanation;
  await scoreNow();
}

// -- start -----------------------------------------------------------------------

function fillSelect(select, names, preferred) {
  select.replaceChildren(...names.map((n) => el("option", { text: n, attrs: { value: n } })));
  select.value = preferred;
  select.dataset.default = preferred;
}

async function start() {
  const secret = $("#secret");
  secret.value = api.getSecret();
  secret.addEventListener("input", () => api.setSecret(secret.value));

  $("#example").addEventListener("change", (e) => e.target.value && loadExample(e.target.value));
  $("#paste-load").addEventListener("click", () => loadPasted($("#paste").value));
  $("#feature").addEventListener("change", (e) => useDataset({ id: null, falseExplanations: [], ...state.pasted[Number(e.target.value)] }));
  $("#file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (file) loadPasted(await file.text());
  });
  $("#suggestion").addEventListener("click", () => {
    $("#explanation").value = state.dataset.suggestion;
    writeUrl();
  });
  // Buttons are disabled during a request; Enter must wait as well.
  $("#explanation").addEventListener("keydown", (e) => e.key === "Enter" && !document.body.dataset.busy && scoreNow());
  $("#score-btn").addEventListener("click", scoreNow);
  $("#share").addEventListener("click", async () => {
    writeUrl();
    const status = $("#score-status");
    try {
      await navigator.clipboard.writeText(location.href);
      setStatus(status, "link copied");
    } catch {
      setStatus(status, `link: ${location.href}`);
    }
    if (state.dataset && !state.dataset.id) setStatus(status, `${status.textContent} (pasted texts are not in the link)`);
  });
  $("#compare-btn").addEventListener("click", compareNow);
  $("#compare-fill").addEventListener("click", () => {
    const d = state.dataset;
    $("#compare-input").value = [d.suggestion, ...(d.falseExplanations || [])].filter(Boolean).join("\n");
    writeUrl();
  });
  $("#dry-run").addEventListener("click", dryRun);
  $("#generate").addEventListener("click", generate);
  for (const id of ["#simulator", "#scorer", "#style"]) $(id).addEventListener("change", writeUrl);

  const params = new URLSearchParams(location.search);
  const service = $("#service");
  try {
    const h = await api.health();
    fillSelect($("#simulator"), h.simulator.available, h.simulator.default);
    fillSelect($("#scorer"), h.scorers.available, "simulation");
    $("#style").dataset.default = "original";
    service.textContent =
      `simulator ${h.simulator.default}${h.simulator.offline ? " (offline)" : ""} · explainer ${h.explainer.default_backend}` +
      ` · ${h.auth_required ? "a secret is required" : "open, no secret needed"} · v${h.version}`;
  } catch (err) {
    setStatus(service, `health: ${errorText(err)}`, "error");
  }
  try {
    const list = await api.examples();
    $("#example").append(...list.map((x) => el("option", { text: `${x.title} (${x.texts} texts)`, attrs: { value: x.id } })));
  } catch (err) {
    setStatus($("#load-status"), `examples: ${errorText(err)}`, "error");
  }

  choose($("#simulator"), params.get("simulator"));
  choose($("#scorer"), params.get("scorer"));
  choose($("#style"), params.get("style"));
  if (params.get("explanation")) $("#explanation").value = params.get("explanation");
  if (params.getAll("compare").length) $("#compare-input").value = params.getAll("compare").join("\n");
  if (params.get("example")) {
    await loadExample(params.get("example"));
    if (state.dataset && params.get("explanation")) await scoreNow();
    if (state.dataset && compareLines().length >= 2) await compareNow();
  }
  document.body.dataset.ready = "1";
}

start();
