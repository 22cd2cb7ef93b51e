// The status page: renders the snapshot syncd sends on /v1/status/events
// (server-sent events; the browser reconnects by itself). No framework:
// every element is built with textContent, so names from the fleet are
// never parsed as HTML.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// "14:05" for an RFC 3339 time today, else "Dec 2 14:05"; "forever" past 2100.
function when(rfc3339) {
  const t = new Date(rfc3339);
  if (isNaN(t)) return rfc3339 || "";
  if (t.getFullYear() > 2100) return "forever";
  const hm = t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const today = new Date().toDateString() === t.toDateString();
  return today ? hm : t.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + hm;
}

function tile(label, value, warn) {
  return el("div", { class: "tile" + (warn ? " warn" : "") },
    el("div", { class: "value" }, value), el("div", { class: "label" }, label));
}

// Whether any gateway answered: else the counts are unknown, not zero.
function known(s) {
  return s.inflight.configured && s.inflight.gateways.some((g) => !g.error);
}

function inflightOf(s, instance) {
  return known(s) ? String(s.inflight.instances[instance] || 0) : "–";
}

function renderSummary(s) {
  const up = s.instances.filter((i) => i.state === "up").length;
  const running = s.syncs.filter((j) => j.ok === undefined).length;
  const total = Object.values(s.inflight.instances).reduce((a, b) => a + b, 0);
  document.getElementById("summary").replaceChildren(
    tile("instances up", up + " / " + s.instances.length, up < s.instances.length),
    tile("models", s.models.length),
    tile("digest disagreements", s.digest_mismatches, s.digest_mismatches > 0),
    tile("in flight", known(s) ? total : "–", s.inflight.configured && !known(s)),
    tile("syncs running", running),
  );
}

function renderInstances(s) {
  const rows = s.instances.map((i) => {
    const loaded = i.loaded_models.map((l) =>
      el("span", { class: "chip" }, l.name, el("small", {}, " " + when(l.expires_at))));
    const state = i.state === "failing"
      ? "failing " + i.consecutive_failures + "×" : i.state;
    return el("tr", { "data-instance": i.name, "data-state": i.state },
      el("td", { "data-label": "instance" }, el("b", {}, i.name), el("div", { class: "url" }, i.url)),
      el("td", { "data-label": "state" }, el("span", { class: "badge " + i.state }, state)),
      el("td", { "data-label": "version" }, i.version || "?"),
      el("td", { "data-label": "poll" }, i.poll_latency_ms == null ? "–" : i.poll_latency_ms.toFixed(1) + " ms"),
      el("td", { "data-label": "models", title: i.model_names.join("\n") }, i.model_names.length),
      el("td", { "data-label": "loaded" }, loaded.length ? loaded : "none"),
      el("td", { "data-label": "in flight", class: "num" }, inflightOf(s, i.name)),
      el("td", { "data-label": "last error", class: "error" }, i.last_error || ""),
    );
  });
  fill(document.querySelector("#instances tbody"), rows);
}

function cell(m, r) {
  if (!r) return el("td", { class: "cell none", "data-model": m.key, "data-held": "no" }, "·");
  const kind = r.loaded ? "loaded" : "held";
  const mark = r.canonical ? (r.loaded ? "●" : "○") : "≠";
  const title = r.instance + ": " + r.digest + (r.canonical ? " (canonical)" : " (not canonical: " + m.canonical_digest + ")")
    + (r.loaded ? ", loaded until " + r.expires_at : "");
  return el("td", {
    class: "cell " + kind + (r.canonical ? "" : " other"), title,
    "data-model": m.key, "data-instance": r.instance, "data-held": "yes",
    "data-loaded": r.loaded ? "yes" : "no", "data-canonical": r.canonical ? "yes" : "no",
  }, mark, r.loaded ? el("small", {}, when(r.expires_at)) : null,
     r.canonical ? null : el("small", {}, r.digest.slice(0, 7)));
}

function renderGrid(s) {
  const names = s.instances.map((i) => i.name);
  const head = el("tr", {}, el("th", { class: "model" }, "model"),
    names.map((n) => el("th", { class: "inst" }, n)), el("th", {}, "in flight"));
  document.querySelector("#grid thead").replaceChildren(head);
  const rows = s.models.map((m) => {
    const byInst = new Map(m.replicas.map((r) => [r.instance, r]));
    const flights = s.inflight.models[m.key] || {};
    const total = Object.values(flights).reduce((a, b) => a + b, 0);
    return el("tr", { "data-model": m.key, class: m.digest_mismatch ? "mismatch" : "" },
      el("th", { class: "model", title: m.key }, m.name,
        m.digest_mismatch ? el("span", { class: "badge down" }, "digests disagree") : null,
        el("div", { class: "url" }, "canonical " + m.canonical_digest)),
      names.map((n) => cell(m, byInst.get(n))),
      el("td", { class: "num" }, known(s) ? total : "–"));
  });
  fill(document.querySelector("#grid tbody"), rows);
}

function renderSyncs(s) {
  const jobs = s.syncs.slice().reverse();
  const rows = jobs.map((j) => {
    const pct = j.ok === true ? 100 : j.total ? Math.floor((100 * (j.completed || 0)) / j.total) : null;
    const state = j.ok === undefined ? "running" : j.ok ? "done" : "failed";
    return el("tr", { "data-state": state },
      el("td", { "data-label": "instance" }, j.instance),
      el("td", { "data-label": "model" }, j.model),
      el("td", { "data-label": "action" }, j.kind),
      el("td", { "data-label": "status" }, el("span", { class: "badge " + state }, j.status)),
      el("td", { "data-label": "progress" }, pct === null ? "" :
        el("div", { class: "bar" }, el("div", { style: "width:" + pct + "%" }), el("span", {}, pct + "%"))),
      el("td", { "data-label": "started" }, when(j.started)),
      el("td", { "data-label": "error", class: "error" }, j.error || ""));
  });
  fill(document.querySelector("#syncs tbody"), rows);
  document.getElementById("nosyncs").hidden = jobs.length > 0;
}

function renderSource(s) {
  const li = document.getElementById("inflight-source");
  if (!s.inflight.configured) {
    li.replaceChildren("In flight: not shown. syncd does not see client traffic; the filter in each Envoy counts it. Start syncd with ",
      el("code", {}, "--envoy-admin http://127.0.0.1:9901"), " (one per gateway) to show those counts here.");
    return;
  }
  const parts = s.inflight.gateways.map((g) =>
    el("span", { class: g.error ? "error" : "" }, g.admin + (g.error ? " (" + g.error + ")" : " (ok)")));
  li.replaceChildren("In flight: the filter's gauges read from the Envoy admin of each gateway, summed, at most once a second: ",
    ...parts.flatMap((p, i) => (i ? [", ", p] : [p])), ".");
}

function render(s) {
  renderSummary(s);
  renderInstances(s);
  renderGrid(s);
  renderSyncs(s);
  renderSource(s);
  document.getElementById("mapid").textContent = s.map_id || "not ready (first poll round not finished)";
  document.getElementById("updated").textContent = new Date().toLocaleTimeString();
  document.body.dataset.mapId = s.map_id || "";
}

function connect() {
  const conn = document.getElementById("conn");
  const events = new EventSource("/v1/status/events");
  events.addEventListener("status", (e) => {
    render(JSON.parse(e.data));
    conn.textContent = "live";
    conn.dataset.state = "live";
  });
  events.onerror = () => {
    conn.textContent = "reconnecting…";
    conn.dataset.state = "lost";
  };
}

for (const c of document.querySelectorAll("code")) {
  c.textContent = c.textContent.replace("http://THIS-HOST", location.origin);
}
connect();
