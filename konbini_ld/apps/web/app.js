"use strict";
// The query page: named queries with their parameters, or any SPARQL; results as a table with
// prefixed names, downloads (CSV, JSON, Turtle), a permalink, readable errors; results over
// time (history's) also as a line chart, one panel per counter.
const $ = (id) => document.getElementById(id);
let queries = {};
let prefixes = {};

// Only http(s) IRIs become links: a stored IRI is data, and a javascript: or data: one must
// never run (the loader refuses them; this is the second line).
const LINKABLE = /^https?:\/\//i;

function compact(iri) {
  for (const [prefix, ns] of Object.entries(prefixes)) {
    if (iri.startsWith(ns)) {
      const local = iri.slice(ns.length);
      if (/^[A-Za-z_][\w\-]*$/.test(local)) return prefix + ":" + local;
    }
  }
  return iri;
}

// An IRI links to its page on this server (resource?iri=…: what the store holds about it); an
// http(s) IRI also gets a link out (↗).
function cell(term) {
  if (!term) return document.createTextNode("");
  if (term.type === "uri") {
    const box = document.createElement("span");
    const a = document.createElement("a");
    a.href = "resource?iri=" + encodeURIComponent(term.value); a.textContent = compact(term.value);
    a.title = term.value; a.className = "entity";
    box.appendChild(a);
    if (LINKABLE.test(term.value)) {
      const out = document.createElement("a");
      out.href = term.value; out.title = term.value; out.rel = "noopener noreferrer";
      out.className = "out"; out.setAttribute("aria-label", "open " + term.value);
      box.append(out);
    }
    return box;
  }
  return document.createTextNode(term.value);
}

function renderTable(data) {
  const vars = data.head.vars || [];
  const table = document.createElement("table");
  table.id = "results-table";
  const head = table.createTHead().insertRow();
  for (const v of vars) { const th = document.createElement("th"); th.textContent = v; head.appendChild(th); }
  const body = table.createTBody();
  // the page shows at most serve --max-rows rows (the answer itself is whole)
  const most = Number(document.body.dataset.maxRows) || Infinity;
  for (const b of data.results.bindings.slice(0, most)) {
    const tr = body.insertRow();
    for (const v of vars) tr.insertCell().appendChild(cell(b[v]));
  }
  $("results").replaceChildren(table);
  return data.results.bindings.length;
}

const XSD = "http://www.w3.org/2001/XMLSchema#";
const NUMERIC = new Set(["integer", "decimal", "double", "float", "long", "int", "nonNegativeInteger"].map((t) => XSD + t));
const SVG = "http://www.w3.org/2000/svg";

// Series to draw: by counter for rows shaped like history's (time, counter, value), else one per
// numeric column; only when a column holds times. Returns [timeVar, Map(name -> [[ms, value]])].
function seriesOf(data) {
  const vars = data.head.vars || [];
  const rows = data.results.bindings;
  const isTime = (v) => rows.some((b) => b[v]) && rows.every((b) => !b[v] || b[v].datatype === XSD + "dateTime");
  const timeVar = vars.find(isTime);
  const series = new Map();
  if (!timeVar) return [null, series];
  const add = (name, b, term) => {
    if (!b[timeVar] || !term || !NUMERIC.has(term.datatype)) return;
    const t = Date.parse(b[timeVar].value), y = Number(term.value);
    if (Number.isNaN(t) || !Number.isFinite(y)) return;
    if (!series.has(name)) series.set(name, []);
    series.get(name).push([t, y]);
  };
  if (vars.includes("counter") && vars.includes("value")) {
    for (const b of rows) if (b.counter) add(compact(b.counter.value).replace(/^ks:/, ""), b, b.value);
  } else {
    for (const v of vars) if (v !== timeVar) for (const b of rows) add(v, b, b[v]);
  }
  for (const [name, points] of series) {
    if (points.length < 2) series.delete(name); else points.sort((a, b) => a[0] - b[0]);
  }
  return [timeVar, series];
}

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

const number = (y) => Math.abs(y) >= 100 ? Math.round(y).toLocaleString("en") : String(Number(y.toPrecision(4)));
const day = (t) => new Date(t).toISOString().slice(0, 16).replace("T", " ");

// One panel per series, each on its own scale (followers in the millions, following in the tens).
function renderChart(data) {
  const [timeVar, series] = seriesOf(data);
  const box = $("chart");
  box.replaceChildren();
  box.hidden = series.size === 0;
  if (!series.size) return 0;
  const all = [...series.values()].flat();
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
  const W = 720, H = 150, L = 110, R = 20, T = 24, B = 28;
  const x = (t) => L + (t1 === t0 ? (W - L - R) / 2 : ((t - t0) / (t1 - t0)) * (W - L - R));
  for (const [name, points] of series) {
    const ys = points.map((p) => p[1]);
    let lo = Math.min(...ys), hi = Math.max(...ys);
    if (lo === hi) { lo -= 1; hi += 1; }
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
    const panel = svg("svg", { class: "panel", viewBox: `0 0 ${W} ${H}`, role: "img", "data-series": name,
                               "aria-label": `${name} over ${timeVar}` });
    panel.appendChild(svg("text", { x: 4, y: 16, class: "name" }, name));
    panel.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    panel.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    panel.appendChild(svg("text", { x: L - 6, y: y(hi) + 4, class: "tick", "text-anchor": "end" }, number(hi)));
    panel.appendChild(svg("text", { x: L - 6, y: y(lo) + 4, class: "tick", "text-anchor": "end" }, number(lo)));
    panel.appendChild(svg("text", { x: L, y: H - 8, class: "tick" }, day(t0)));
    panel.appendChild(svg("text", { x: W - R, y: H - 8, class: "tick", "text-anchor": "end" }, day(t1)));
    panel.appendChild(svg("polyline", { class: "line", points: points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ") }));
    for (const p of points) {
      const dot = svg("circle", { cx: x(p[0]).toFixed(1), cy: y(p[1]).toFixed(1), r: 3, class: "dot" });
      dot.appendChild(svg("title", {}, `${day(p[0])}: ${number(p[1])}`));
      panel.appendChild(dot);
    }
    box.appendChild(panel);
  }
  return series.size;
}

function selectNamed(values) {
  const q = queries[$("named").value];
  $("params").replaceChildren();
  $("description").textContent = q ? q.description : "";
  if (!q) return;
  $("query").value = q.text;
  for (const p of q.params) {
    const label = document.createElement("label");
    label.className = "param";
    label.textContent = p.name + (p.required ? "" : " (optional)");
    const input = document.createElement("input");
    input.name = p.name; input.placeholder = p.type; input.title = p.description; input.size = 48;
    if (values && values.get(p.name)) input.value = values.get(p.name);
    label.appendChild(input);
    $("params").appendChild(label);
  }
}

// The request for the current query: a named query with its parameters, or the text.
function request(format) {
  const named = queries[$("named").value];
  const text = $("query").value;
  const params = new URLSearchParams();
  if (named && text === named.text) {
    for (const input of $("params").querySelectorAll("input")) if (input.value) params.set(input.name, input.value);
    if (format) params.set("format", format);
    return { url: "queries/" + encodeURIComponent(named.name) + "?" + params, named };
  }
  params.set("query", text);
  if (format) params.set("format", format);
  return { url: "sparql?" + params, named: null };
}

function permalink() {
  const named = queries[$("named").value];
  const params = new URLSearchParams();
  if (named && $("query").value === named.text) {
    params.set("named", named.name);
    for (const input of $("params").querySelectorAll("input")) if (input.value) params.set(input.name, input.value);
  } else {
    params.set("query", $("query").value);
  }
  const url = location.pathname + "?" + params;
  history.replaceState(null, "", url);
  return location.origin + url;
}

function showError(message, line, column) {
  $("results").replaceChildren();
  $("downloads").replaceChildren();
  const box = $("error");
  box.hidden = false;
  let text = message.trim();
  if (line) {
    const source = $("query").value.split("\n")[line - 1] || "";
    const col = Math.max(1, Math.min(column || 1, source.length + 1));
    text = "Line " + line + ", column " + col + ": " + text.replace(/^line \d+:\d+: /, "") +
      "\n\n" + source + "\n" + " ".repeat(col - 1) + "^";
  }
  box.textContent = text;
  $("status").className = "error";
  $("status").textContent = "error";
}

function downloads(isGraph) {
  const box = $("downloads");
  box.replaceChildren();
  const kinds = isGraph ? [["Turtle", "turtle", "ttl"], ["N-Triples", "nt", "nt"], ["JSON-LD", "jsonld", "jsonld"]]
    : [["CSV", "csv", "csv"], ["JSON", "json", "srj"]];
  for (const [label, format, ext] of kinds) {
    const a = document.createElement("a");
    a.href = request(format).url + (format === "jsonld" ? "&context=inline" : "");
    a.download = "results." + ext; a.textContent = label; a.className = "download";
    box.appendChild(a);
  }
}

async function run() {
  const status = $("status");
  status.className = ""; status.textContent = "running…";
  $("error").hidden = true;
  const { url } = request(null);
  const accept = "application/sparql-results+json, text/turtle;q=0.9";
  const started = performance.now();
  let response;
  try {
    response = await fetch(url, { headers: { Accept: accept } });
  } catch (e) {
    showError(String(e)); return;
  }
  const body = await response.text();
  const ms = Math.round(performance.now() - started);
  if (!response.ok) {
    showError(body, Number(response.headers.get("x-error-line")) || 0, Number(response.headers.get("x-error-column")) || 0);
    return;
  }
  const type = response.headers.get("content-type") || "";
  let summary;
  if (type.includes("sparql-results+json")) {
    const data = JSON.parse(body);
    if ("boolean" in data) {
      $("results").replaceChildren(document.createTextNode(String(data.boolean))); summary = "ASK: " + data.boolean;
      $("downloads").replaceChildren(); renderChart({ head: {}, results: { bindings: [] } });
    } else {
      const n = renderTable(data); summary = n + (n === 1 ? " row" : " rows"); downloads(false);
      const shown = $("results-table").tBodies[0].rows.length;
      if (shown < n) summary += " (the first " + shown + " shown: serve --max-rows)";
      const panels = renderChart(data);
      if (panels) summary += ", " + panels + (panels === 1 ? " series" : " series") + " charted";
    }
  } else {
    $("chart").hidden = true;
    const pre = document.createElement("pre"); pre.id = "graph"; pre.textContent = body;
    $("results").replaceChildren(pre);
    const triples = body.split("\n").filter((l) => /[.;,]\s*$/.test(l) && !/^@prefix/.test(l)).length;
    summary = "graph (" + triples + " statement lines)"; downloads(true);
  }
  status.textContent = summary + " in " + ms + " ms";
}

function restore() {
  const params = new URLSearchParams(location.search);
  if (params.get("named") && queries[params.get("named")]) {
    $("named").value = params.get("named");
    selectNamed(params);
    run();
  } else if (params.get("query")) {
    $("query").value = params.get("query");
    run();
  }
}

$("named").addEventListener("change", () => selectNamed(null));
$("run").addEventListener("click", run);
$("permalink").addEventListener("click", () => {
  const link = permalink();
  $("status").className = ""; $("status").textContent = "permalink: " + link;
});
$("query").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });

Promise.all([fetch("queries").then((r) => r.json()), fetch("prefixes").then((r) => r.json())]).then(([list, known]) => {
  prefixes = known;
  for (const q of list) {
    queries[q.name] = q;
    const option = document.createElement("option");
    option.value = q.name; option.textContent = q.title + " (" + q.name + ")";
    $("named").appendChild(option);
  }
  restore();
  document.body.dataset.ready = "true";
});
