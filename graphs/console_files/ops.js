// Operations: the window's numbers, charts of turn time, time to first token, tokens and errors over time
// (drawn as SVG here: no chart library, nothing fetched from elsewhere), and the error report.
import { $, el, svg, when, getJson, withUser } from "./console.js";

const WIDTH = 460;
const HEIGHT = 160;
const PAD = 34;

export function setupOps() {
  $("ops-window").addEventListener("change", () => showOps());
}

function seconds(value) { return value === null || value === undefined ? "—" : `${value.toFixed(2)} s`; }

function number(label, value) {
  return el("div", { dataset: { number: label } }, el("dt", {}, label), el("dd", {}, value));
}

// One chart: a line per series over the window; points are bucket starts.
function chart(title, since, until, lines) {
  const box = el("div", { class: "chart", dataset: { chart: title } }, el("h4", {}, title));
  const picture = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, width: "100%", role: "img", "aria-label": title });
  const values = lines.flatMap((line) => line.points.map((p) => p[1])).filter((v) => v !== null);
  const top = Math.max(...values, 0) || 1;
  const x = (t) => PAD + ((t - since) / Math.max(until - since, 1)) * (WIDTH - PAD - 8);
  const y = (v) => HEIGHT - 18 - (v / top) * (HEIGHT - 30);
  picture.append(svg("line", { x1: PAD, y1: HEIGHT - 18, x2: WIDTH - 8, y2: HEIGHT - 18, stroke: "#cbd5e0" }));
  const topLabel = svg("text", { x: 2, y: 12 });
  topLabel.textContent = top.toPrecision(3);
  const zero = svg("text", { x: 2, y: HEIGHT - 18 });
  zero.textContent = "0";
  const start = svg("text", { x: PAD, y: HEIGHT - 4 });
  start.textContent = new Date(since).toLocaleString();
  const end = svg("text", { x: WIDTH - 8, y: HEIGHT - 4, "text-anchor": "end" });
  end.textContent = "now";
  picture.append(topLabel, zero, start, end);
  for (const line of lines) {
    const points = line.points.filter((p) => p[1] !== null);
    if (!points.length) continue;
    picture.append(svg("polyline", {
      points: points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
      fill: "none", stroke: line.color, "stroke-width": 2, "data-series": line.name,
    }));
    for (const [t, v] of points) picture.append(svg("circle", { cx: x(t), cy: y(v), r: 2.5, fill: line.color }));
  }
  const legend = el("div", { class: "legend" }, lines.map((l) => {
    const key = el("span", {}, `■ ${l.name}  `);
    key.style.color = l.color;  // CSSOM, which the page's no-inline-style policy allows
    return key;
  }));
  box.append(picture, legend);
  if (!values.length) box.append(el("p", { class: "meta" }, "No runs in this window."));
  return box;
}

async function showHealth() {
  const health = await getJson("/health");
  const box = $("health");
  box.dataset.status = health.status;
  box.replaceChildren(el("strong", {}, `health: ${health.status}`),
    ...health.checks.map((c) => ` · ${c.name} ${c.status}: ${c.detail}`));
}

export async function showOps() {
  const window = $("ops-window").value;
  await showHealth();
  const { report, series } = await getJson(withUser(`/ops?window=${window}&buckets=48`));
  const until = Date.now();
  const since = new Date(series.since).getTime();
  const at = (p) => new Date(p.start).getTime();
  const points = (key) => series.points.map((p) => [at(p), p[key]]);
  $("ops-summary").replaceChildren(
    number("turns", report.turns),
    number("error rate", `${(report.error_rate * 100).toFixed(1)} %`),
    number("turn p50 / p95 / p99", ["p50", "p95", "p99"].map((k) => seconds(report.turn_seconds[k])).join(" / ")),
    number("first token p50 / p95", ["p50", "p95"].map((k) => seconds(report.first_token_seconds[k])).join(" / ")),
    number("input tokens", report.input_tokens + (report.tokens_estimated ? " (est.)" : "")),
    number("output tokens", report.output_tokens),
    number("by status", Object.entries(report.by_status).map(([k, v]) => `${k} ${v}`).join(", ") || "—"),
    number("slowest node", Object.entries(report.node_seconds).sort((a, b) => b[1] - a[1])
      .slice(0, 1).map(([k, v]) => `${k} ${seconds(v)}`).join("") || "—"),
  );
  $("charts").replaceChildren(
    chart("turn time (s)", since, until, [
      { name: "p50", color: "#2b6cb0", points: points("turn_p50") },
      { name: "p95", color: "#c05621", points: points("turn_p95") }]),
    chart("time to first token (s)", since, until, [
      { name: "p50", color: "#2f855a", points: points("first_token_p50") }]),
    chart("tokens", since, until, [
      { name: "input", color: "#6b46c1", points: points("input_tokens") },
      { name: "output", color: "#b83280", points: points("output_tokens") }]),
    chart("turns and errors", since, until, [
      { name: "turns", color: "#2b6cb0", points: points("turns") },
      { name: "errors", color: "#c53030", points: points("errors") }]),
  );
  $("ops-errors").tBodies[0].replaceChildren(...report.error_report.map((e) =>
    el("tr", {}, el("td", {}, e.error_class), el("td", {}, e.count), el("td", {}, e.last_message), el("td", {}, when(e.last_at)))));
}
