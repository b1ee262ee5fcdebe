// One row of token cells per text: the cell is shaded by the true activation, the bar
// under it by the simulated one. Two single-hue ramps (ColorBrewer Blues and Oranges):
// told apart by hue and by lightness, so they stay readable with any colour vision.

import { el, fmt } from "./dom.js";

const BLUES = [[247, 251, 255], [8, 81, 156]];
const ORANGES = [[255, 245, 235], [166, 54, 3]];

function ramp([low, high], t) {
  const k = Math.min(1, Math.max(0, t));
  const mix = low.map((c, i) => Math.round(c + (high[i] - c) * k));
  return `rgb(${mix[0]}, ${mix[1]}, ${mix[2]})`;
}

// Whitespace a reader cannot see is drawn as a symbol; the token itself is unchanged
// in the data attributes and tooltips.
function visible(token) {
  return token.replace(/\r?\n/g, "⏎").replace(/\t/g, "⇥");
}

function maxOf(lists) {
  let m = 0;
  for (const list of lists) for (const v of list || []) if (Number.isFinite(v) && v > m) m = v;
  return m;
}

function tokenCell(token, trueValue, simValue, trueMax, simMax) {
  const hasSim = simValue !== null && simValue !== undefined;
  const tip = `${JSON.stringify(token)} · true ${fmt(trueValue)}` + (hasSim ? ` · simulated ${fmt(simValue)}` : "");
  const cell = el("span", {
    className: "tok",
    attrs: {
      tabindex: "-1",
      title: tip,
      "aria-label": tip,
      "data-tip": tip,
      "data-true": String(trueValue),
      "data-sim": hasSim ? String(simValue) : "",
    },
  });
  const t = trueMax > 0 ? trueValue / trueMax : 0;
  const text = el("span", { className: "t", text: visible(token) });
  text.style.backgroundColor = ramp(BLUES, t);
  if (t > 0.55) text.classList.add("dark");
  const bar = el("span", { className: "s" });
  if (hasSim) bar.style.backgroundColor = ramp(ORANGES, simMax > 0 ? simValue / simMax : 0);
  else bar.classList.add("none");
  cell.append(text, bar);
  return cell;
}

// Keyboard: one tab stop per text (its first token); the arrow keys move between tokens
// (left/right) and texts (up/down), Home/End to a text's ends. A focused token shows its
// values in a box under it, the same text as its title and aria-label.
function moveFocus(event) {
  const cell = event.target.closest(".tok");
  if (!cell) return;
  const row = cell.parentElement;
  const cells = [...row.children];
  const at = cells.indexOf(cell);
  let next = null;
  if (event.key === "ArrowRight") next = cells[at + 1];
  else if (event.key === "ArrowLeft") next = cells[at - 1];
  else if (event.key === "Home") next = cells[0];
  else if (event.key === "End") next = cells[cells.length - 1];
  else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    const li = row.closest("li");
    const other = event.key === "ArrowDown" ? li.nextElementSibling : li.previousElementSibling;
    const target = other && other.querySelectorAll(".cells .tok");
    if (target && target.length) next = target[Math.min(at, target.length - 1)];
  }
  if (!next) return;
  event.preventDefault();
  cell.setAttribute("tabindex", "-1");
  next.setAttribute("tabindex", "0");
  next.focus();
}

// `texts`: the request's [{tokens, values}]; `answer`: the /score response.
export function renderTexts(list, texts, answer) {
  list.replaceChildren();
  const sims = Array.isArray(answer.simulations) ? answer.simulations : [];
  const perText = Array.isArray(answer.texts) ? answer.texts : [];
  const failed = new Map();
  for (const f of answer.failures || []) failed.set(f.index, f.reason);
  const trueMax = maxOf(texts.map((t) => t.values));
  const simMax = maxOf(sims.map((s) => s && s.simulation && s.simulation.expected_activations));

  texts.forEach((text, i) => {
    const sim = sims[i];
    const expected = sim && sim.simulation ? sim.simulation.expected_activations : null;
    const head = el("div", { className: "text-head" });
    head.append(el("span", { className: "n", text: `text ${i + 1}` }));
    if (failed.has(i) || (sim && sim.error)) {
      head.append(el("span", { className: "failed", text: `failed: ${failed.get(i) || sim.error}` }));
    } else if (sim) {
      head.append(el("span", { text: sim.ev_correlation_score === null ? "score – (undefined: a constant text or prediction)" : `score ${fmt(sim.ev_correlation_score)}`, attrs: { "data-text-score": sim.ev_correlation_score === null ? "" : String(sim.ev_correlation_score) } }));
    }
    const info = perText[i];
    if (info && typeof info === "object") {
      const bits = Object.entries(info)
        .filter(([k, v]) => k !== "index" && ["string", "number", "boolean"].includes(typeof v))
        .map(([k, v]) => `${k.replace(/_/g, " ")}: ${typeof v === "number" && !Number.isInteger(v) ? fmt(v) : v}`);
      head.append(el("span", { className: "muted", text: bits.join(" · ") }));
    }
    const cells = el("div", { className: "cells", attrs: { role: "group", "aria-label": `text ${i + 1}, tokens` } });
    cells.addEventListener("keydown", moveFocus);
    text.tokens.forEach((token, j) => {
      const simValue = expected && j < expected.length ? expected[j] : null;
      cells.append(tokenCell(token, text.values[j], simValue, trueMax, simMax));
    });
    if (cells.firstElementChild) cells.firstElementChild.setAttribute("tabindex", "0");
    const row = el("li", { className: failed.has(i) ? "text failed-row" : "text" }, [head, cells]);
    list.append(row);
  });
}
