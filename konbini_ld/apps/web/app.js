"use strict";
const $ = (id) => document.getElementById(id);
let queries = {};

// Only http(s) IRIs become links: a stored IRI is data, and a javascript: or data: one must
// never run (the loader refuses them; this is the second line).
const LINKABLE = /^https?:\/\//i;

function cell(term) {
  if (!term) return document.createTextNode("");
  if (term.type === "uri" && LINKABLE.test(term.value)) {
    const a = document.createElement("a");
    a.href = term.value; a.textContent = term.value; a.rel = "noopener noreferrer";
    return a;
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
  for (const b of data.results.bindings) {
    const tr = body.insertRow();
    for (const v of vars) tr.insertCell().appendChild(cell(b[v]));
  }
  $("results").replaceChildren(table);
  return data.results.bindings.length;
}

function selectNamed() {
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
    label.appendChild(input);
    $("params").appendChild(label);
  }
}

async function run() {
  const status = $("status");
  status.className = ""; status.textContent = "running…";
  const named = queries[$("named").value];
  const text = $("query").value;
  let response;
  const started = performance.now();
  try {
    if (named && text === named.text) {
      const params = new URLSearchParams();
      for (const input of $("params").querySelectorAll("input")) if (input.value) params.set(input.name, input.value);
      const accept = named.form === "CONSTRUCT" || named.form === "DESCRIBE" ? "text/turtle" : "application/sparql-results+json";
      response = await fetch("queries/" + encodeURIComponent(named.name) + "?" + params, { headers: { Accept: accept } });
    } else {
      response = await fetch("sparql", {
        method: "POST",
        headers: { "Content-Type": "application/sparql-query", Accept: "application/sparql-results+json, text/turtle;q=0.9" },
        body: text,
      });
    }
  } catch (e) {
    status.className = "error"; status.textContent = String(e); return;
  }
  const body = await response.text();
  const ms = Math.round(performance.now() - started);
  if (!response.ok) { status.className = "error"; status.textContent = body; $("results").replaceChildren(); return; }
  const type = response.headers.get("content-type") || "";
  const truncated = response.headers.get("x-result-truncated");
  let summary;
  if (type.includes("sparql-results+json")) {
    const data = JSON.parse(body);
    if ("boolean" in data) { $("results").replaceChildren(document.createTextNode(String(data.boolean))); summary = "ASK"; }
    else { const n = renderTable(data); summary = n + (n === 1 ? " row" : " rows"); }
  } else {
    const pre = document.createElement("pre"); pre.textContent = body; $("results").replaceChildren(pre);
    summary = "graph";
  }
  status.textContent = summary + " in " + ms + " ms" + (truncated ? " (truncated at " + truncated + ")" : "");
}

$("named").addEventListener("change", selectNamed);
$("run").addEventListener("click", run);
$("query").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });

fetch("queries").then((r) => r.json()).then((list) => {
  for (const q of list) {
    queries[q.name] = q;
    const option = document.createElement("option");
    option.value = q.name; option.textContent = q.title + " (" + q.name + ")";
    $("named").appendChild(option);
  }
  document.body.dataset.ready = "true";
});
