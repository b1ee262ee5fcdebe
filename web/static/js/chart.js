// A dot-and-whisker chart of compared explanations: one row each, best first, the score
// as a dot and its interval as a line, on a fixed axis from -1 to 1 with zero marked.

import { svg } from "./dom.js";

const WIDTH = 1000;
const LEFT = 340; // room for the explanations' labels
const RIGHT = 60;
const LABEL_CHARS = 40;
const ROW = 30;
const TOP = 14;
const AXIS = 30;

export function drawScores(node, rows) {
  node.replaceChildren(node.querySelector("title"));
  const height = TOP + rows.length * ROW + AXIS;
  node.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
  node.setAttribute("width", WIDTH);
  node.setAttribute("height", height);
  const x = (v) => LEFT + ((v + 1) / 2) * (WIDTH - LEFT - RIGHT);
  const bottom = TOP + rows.length * ROW;

  for (const tick of [-1, -0.5, 0, 0.5, 1]) {
    node.append(svg("line", { x1: x(tick), x2: x(tick), y1: TOP - 6, y2: bottom, class: tick === 0 ? "zero" : "grid" }));
    node.append(svg("text", { x: x(tick), y: bottom + 18, class: "tick", "text-anchor": "middle" }, tick));
  }
  rows.forEach((row, i) => {
    const y = TOP + i * ROW + ROW / 2;
    const label = row.explanation.length > LABEL_CHARS ? `${row.explanation.slice(0, LABEL_CHARS - 1)}…` : row.explanation;
    const name = svg("text", { x: LEFT - 14, y: y + 4, class: "rank", "text-anchor": "end" }, `#${i + 1} ${label}`);
    name.append(svg("title", {}, row.explanation));
    node.append(name);
    const interval = row.interval;
    if (interval && Number.isFinite(interval.low) && Number.isFinite(interval.high)) {
      node.append(svg("line", { x1: x(interval.low), x2: x(interval.high), y1: y, y2: y, class: "whisker" }));
      for (const end of [interval.low, interval.high]) {
        node.append(svg("line", { x1: x(end), x2: x(end), y1: y - 6, y2: y + 6, class: "whisker" }));
      }
    }
    if (Number.isFinite(row.score)) {
      const dot = svg("circle", { cx: x(row.score), cy: y, r: 6, class: i === 0 ? "dot best" : "dot" });
      dot.append(svg("title", {}, `#${i + 1} ${row.explanation}: ${row.score.toFixed(3)}`));
      node.append(dot);
      const right = Math.max(row.score, interval && Number.isFinite(interval.high) ? interval.high : row.score);
      node.append(svg("text", { x: x(right) + 10, y: y + 4, class: "value" }, row.score.toFixed(3)));
    } else {
      node.append(svg("text", { x: x(0) + 8, y: y + 4, class: "tick" }, "no score"));
    }
  });
}
