// swarm dashboard. Every text from the board (titles, results, names, events) is put in
// the page with textContent or as an SVG text node, never parsed as HTML; the server's
// Content-Security-Policy forbids inline script and style besides.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const ROW = 22;      // px per drawn task
const INDENT = 22;   // px per level
const LABEL = 90;    // characters of a title drawn in the tree (the tooltip has it all)
const EVENTS_KEPT = 300;
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

// -- token and name ---------------------------------------------------------------------------

function takeTokenFromHash() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem("swarm-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function token() { return sessionStorage.getItem("swarm-token") || ""; }

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token()) h["Authorization"] = "Bearer " + token();
  return h;
}

function who() { return localStorage.getItem("swarm-who") || ""; }

// -- small formatting -------------------------------------------------------------------------

function num(x) {
  for (const [d, s] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (Math.abs(x) >= d) return (x / d).toPrecision(3) + s;
  }
  return String(Math.round(x));
}

function duration(s) {
  s = Math.floor(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return (h ? h + ":" : "") + mm + ":" + String(r).padStart(2, "0");
}

function clock(ms) { return new Date(ms).toTimeString().slice(0, 8); }

function short(worker) {
  const parts = String(worker).split("-");
  return parts.length >= 3 ? parts.slice(-2).join("-") : worker;
}

// Pheromone colour: pale (a fresh task is a third of the way) to deep red (eight times that).
function heatColour(f) {
  const t = Math.max(0, Math.min(1, f));
  const a = [255, 243, 196], b = [198, 40, 40];
  const c = a.map((v, i) => Math.round(v + (b[i] - v) * t));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// -- list view --------------------------------------------------------------------------------

async function showList() {
  $("list-view").hidden = false;
  for (;;) {
    try {
      const res = await fetch("/api/swarms", { headers: headers(), cache: "no-store" });
      const data = await res.json();
      if (!res.ok) throw new Error(data.error || res.statusText);
      setConn("live", "live");
      drawList(data.swarms);
    } catch (e) {
      setConn("down", String(e.message || e));
    }
    await sleep(2000);
  }
}

function drawList(rows) {
  const body = document.querySelector("#swarms tbody");
  clear(body);
  $("list-empty").hidden = rows.length > 0;
  for (const r of rows) {
    const tr = document.createElement("tr");
    const a = el("a", r.id);
    a.href = "/swarm/" + encodeURIComponent(r.id);
    const first = document.createElement("td");
    first.appendChild(a);
    tr.appendChild(first);
    tr.appendChild(el("td", r.title));
    tr.appendChild(el("td", r.state + (r.outcome ? " (" + r.outcome + ")" : "")));
    tr.appendChild(el("td", `${r.tasks}/${r.max_tasks}`));
    tr.appendChild(el("td", r.n_done));
    tr.appendChild(el("td", r.created ? new Date(Number(r.created)).toLocaleString() : ""));
    body.appendChild(tr);
  }
}

// -- swarm view: the live stream ------------------------------------------------------------------

const view = {
  id: "", snap: null, selected: null, collapsed: new Set(), events: new Map(), ticks: 0,
  abort: null,
};

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function setConn(cls, text) {
  const c = $("conn");
  c.className = "conn " + cls;
  c.textContent = text;
}

async function stream() {
  for (;;) {
    view.abort = new AbortController();
    try {
      const res = await fetch(`/api/swarms/${encodeURIComponent(view.id)}/stream`, {
        headers: headers(), cache: "no-store", signal: view.abort.signal,
      });
      if (!res.ok) {
        const data = await res.json().catch(() => ({ error: res.statusText }));
        setConn("down", data.error || res.statusText);
        await sleep(2000);
        continue;
      }
      setConn("live", "live");
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          handle(buf.slice(0, cut));
          buf = buf.slice(cut + 2);
        }
      }
    } catch (e) {
      // aborted for a new token, or the connection dropped: reconnect below
    }
    setConn("down", "reconnecting");
    await sleep(1000);
  }
}

function handle(block) {
  const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6));
  if (!data.length) return;
  const snap = JSON.parse(data.join("\n"));
  if (snap.error) { setConn("down", snap.error); return; }
  view.snap = snap;
  view.ticks += 1;
  document.body.dataset.ticks = String(view.ticks);
  draw(snap);
}

function draw(s) {
  drawSummary(s);
  drawTree(s);
  drawDetail(s);
  drawWorkers(s);
  drawFlow(s);
  drawChart(s);
  drawEvents(s);
  drawAnswer(s);
}

function drawSummary(s) {
  $("title").textContent = s.title;
  $("crumb").textContent = s.swarm;
  document.title = s.swarm + " · swarm";
  const st = $("state");
  st.textContent = s.state + (s.state === "wrapping" && s.reason ? " (" + s.reason + ")" : "");
  st.className = "badge " + s.state;
  $("elapsed").textContent = duration(s.elapsed_s);
  $("pause").disabled = s.state !== "running";
  $("resume").disabled = s.state !== "paused";
  $("cancel-all").disabled = s.state === "done" || s.state === "cancelled";
  const box = $("budgets");
  clear(box);
  for (const b of s.budgets) {
    const frac = b.limit ? b.spent / b.limit : 0;
    const d = el("div", null, "budget");
    const amount = b.name === "time" ? `${duration(b.spent)} / ${duration(b.limit)}`
      : `${num(b.spent)} / ${num(b.limit)}`;
    d.appendChild(el("div", `${b.name} ${amount}`));
    const meter = el("div", null, "meter");
    const fill = el("div", null, frac >= 0.9 ? "over" : frac >= 0.7 ? "warn" : "");
    fill.style.width = Math.min(100, Math.round(frac * 100)) + "%";
    meter.appendChild(fill);
    d.appendChild(meter);
    box.appendChild(d);
  }
  const parts = Object.entries(s.counts).map(([k, v]) => `${k} ${v}`);
  $("counts").textContent = "tasks: " + parts.join(" · ");
}

// -- the tree -------------------------------------------------------------------------------------

const SHAPES = {
  open: (g, r) => g.appendChild(svg("circle", { r })),
  claimed: (g, r) => g.appendChild(svg("polygon", { points: `${-r},${-r} ${r + 1},0 ${-r},${r}` })),
  waiting: (g, r) => g.appendChild(svg("polygon", { points: `0,${-r - 1} ${r + 1},0 0,${r + 1} ${-r - 1},0` })),
  done: (g, r) => g.appendChild(svg("rect", { x: -r, y: -r, width: 2 * r, height: 2 * r, rx: 2 })),
  dead: (g, r) => g.appendChild(svg("polygon", {
    points: `${-r},${-r + 3} ${-r + 3},${-r} 0,-3 ${r - 3},${-r} ${r},${-r + 3} 3,0 ${r},${r - 3} ${r - 3},${r} 0,3 ${-r + 3},${r} ${-r},${r - 3} -3,0`,
  })),
  cancelled: (g, r) => g.appendChild(svg("rect", { x: -r, y: -3, width: 2 * r, height: 6, rx: 1 })),
};

function treeOf(rows) {
  const nodes = new Map();
  for (const r of rows) nodes.set(r.id, { row: r, kids: [] });
  for (const r of rows) if (r.parent && nodes.has(r.parent)) nodes.get(r.parent).kids.push(r.id);
  return nodes;
}

// Done tasks whose answer has reached the root: the root (when done) and, below a done task,
// its done children (they are what it synthesised).
function answerPath(nodes) {
  const on = new Set();
  const root = nodes.get("0");
  if (!root || root.row.state !== "done") return on;
  const stack = ["0"];
  while (stack.length) {
    const id = stack.pop();
    on.add(id);
    for (const k of nodes.get(id).kids) if (nodes.get(k).row.state === "done") stack.push(k);
  }
  return on;
}

function pathToRoot(nodes, id) {
  const path = [];
  let cur = nodes.get(id);
  while (cur) { path.unshift(cur.row.id); cur = nodes.get(cur.row.parent); }
  return path;
}

function descendants(nodes, id) {
  let n = 0;
  const stack = [...nodes.get(id).kids];
  while (stack.length) { n += 1; stack.push(...nodes.get(stack.pop()).kids); }
  return n;
}

function drawTree(s) {
  const g = $("graph");
  clear(g);
  const nodes = treeOf(s.tree);
  if (!nodes.has("0")) return;
  const golden = answerPath(nodes);
  const selectedPath = new Set(view.selected && nodes.has(view.selected)
    ? pathToRoot(nodes, view.selected) : []);
  const order = [];
  const walk = (id, lvl) => {
    order.push([id, lvl]);
    if (!view.collapsed.has(id)) for (const k of nodes.get(id).kids) walk(k, lvl + 1);
  };
  walk("0", 0);
  const pos = new Map();
  order.forEach(([id, lvl], i) => pos.set(id, [24 + lvl * INDENT, 14 + i * ROW]));
  let width = 400;
  const edges = svg("g", { class: "edges" });
  const marks = svg("g", { class: "nodes" });
  for (const [id] of order) {
    const n = nodes.get(id);
    const [x, y] = pos.get(id);
    const p = pos.get(n.row.parent);
    if (p) {
      // the child's answer has reached its parent: part of the way to the root's answer
      const delivered = n.row.state === "done";
      const selected = selectedPath.has(id) && selectedPath.has(n.row.parent);
      edges.appendChild(svg("path", {
        d: `M${p[0]},${p[1] + 8} V${y} H${x - 9}`, fill: "none",
        stroke: selected ? "#2463eb" : delivered ? "#d99a00" : "#c3c9d4",
        "stroke-width": selected || golden.has(id) ? 2.5 : delivered ? 1.6 : 1,
        "data-to": id,
      }));
    }
    marks.appendChild(nodeMark(nodes, n, x, y, golden.has(id), id === view.selected));
    width = Math.max(width, x + 40 + Math.min(n.row.title.length, LABEL) * 7);
  }
  g.appendChild(edges);
  g.appendChild(marks);
  g.setAttribute("width", String(width));
  g.setAttribute("height", String(order.length * ROW + 10));
}

function nodeMark(nodes, n, x, y, golden, selected) {
  const r = n.row;
  const g = svg("g", {
    class: "node", transform: `translate(${x},${y})`, "data-id": r.id, "data-state": r.state,
    "data-heat": r.heat === null ? "" : r.heat,
  });
  g.appendChild(svg("title", {}, `#${r.id} ${r.state}: ${r.title}`));
  const shape = svg("g", {
    class: "shape",
    fill: r.heat_fraction === null ? "#b8c0cc" : heatColour(r.heat_fraction),
    stroke: selected ? "#2463eb" : golden ? "#d99a00" : "#4b5363",
    "stroke-width": selected || golden ? 2.5 : 1,
  });
  (SHAPES[r.state] || SHAPES.open)(shape, 6);
  g.appendChild(shape);
  let label = (r.kind === "synthesize" ? "Σ " : "") + r.title;
  if (label.length > LABEL) label = label.slice(0, LABEL - 1) + "…";
  const text = svg("text", { x: 12, y: 4, class: "label" }, label);
  if (r.hidden) text.appendChild(svg("tspan", { class: "hidden-count", dx: 6 }, `+${r.hidden}`));
  g.appendChild(text);
  g.addEventListener("click", () => select(r.id));
  if (n.kids.length) {
    const closed = view.collapsed.has(r.id);
    const t = svg("g", { class: "toggle", transform: "translate(-17,0)", "data-toggle": r.id });
    t.appendChild(svg("rect", { x: -6, y: -6, width: 12, height: 12, rx: 3,
      fill: closed ? "#9db8f5" : "#e3e7ee", stroke: "#8a93a6" }));
    t.appendChild(svg("text", { x: 0, y: 4, "text-anchor": "middle" }, closed ? "+" : "−"));
    if (closed) {
      text.appendChild(svg("tspan", { class: "hidden-count", dx: 6 },
        `(${descendants(nodes, r.id)} folded)`));
    }
    t.addEventListener("click", (ev) => {
      ev.stopPropagation();
      if (view.collapsed.has(r.id)) view.collapsed.delete(r.id); else view.collapsed.add(r.id);
      if (view.snap) drawTree(view.snap);
    });
    g.appendChild(t);
  }
  return g;
}

function select(id) {
  view.selected = id;
  if (view.snap) { drawTree(view.snap); drawDetail(view.snap); }
}

function drawDetail(s) {
  const row = s.tree.find((r) => r.id === view.selected);
  $("d-none").hidden = !!row;
  $("d-body").hidden = !row;
  $("d-id").textContent = row ? "#" + row.id : "";
  if (!row) return;
  $("d-title").textContent = row.title;
  $("d-state").textContent = row.state;
  $("d-kind").textContent = row.kind;
  $("d-depth").textContent = row.depth;
  $("d-heat").textContent = row.heat === null ? "— (not open)" : row.heat.toPrecision(4);
  $("d-owner").textContent = row.owner || row.injected_by || "—";
  $("d-attempts").textContent = row.attempts;
  $("d-children").textContent = row.children
    ? `${row.children - row.pending}/${row.children} done` : "none";
  $("d-path").textContent = pathToRoot(treeOf(s.tree), row.id).map((i) => "#" + i).join(" → ");
  $("d-result").textContent = row.result;
  $("boost").disabled = row.state !== "open";
  $("cancel-task").disabled = ["done", "dead", "cancelled"].includes(row.state);
  if (row.state === "waiting" && document.activeElement !== $("inject-parent")) {
    $("inject-parent").placeholder = "under (" + row.id + ")";
  }
}

// -- workers, throughput, events, answer ----------------------------------------------------------

function drawWorkers(s) {
  const stale = s.workers_total - s.workers_alive;
  $("w-count").textContent = `${s.workers_alive} alive` + (stale > 0 ? `, ${stale} stale` : "")
    + (s.workers_total > s.workers.length ? ` (showing ${s.workers.length})` : "");
  const body = document.querySelector("#workers tbody");
  clear(body);
  for (const w of s.workers) {
    const tr = document.createElement("tr");
    const dot = el("td");
    const d = el("span", null, "dot" + (w.alive ? "" : " stale"));
    d.title = w.alive ? "alive" : `stale for ${duration(w.seen_s)}`;
    dot.appendChild(d);
    tr.appendChild(dot);
    tr.appendChild(el("td", w.id + (w.alive ? "" : ` (stale ${duration(w.seen_s)})`)));
    tr.appendChild(el("td", `${w.worker_class} s${w.strength}` + (w.code ? " code" : "")));
    tr.appendChild(el("td", w.host));
    tr.appendChild(el("td", w.mind));
    tr.appendChild(el("td", w.slots));
    tr.appendChild(el("td", w.current ? w.current.split(",").map((t) => "#" + t).join(" ") : "idle"));
    tr.appendChild(el("td", w.tasks));
    tr.appendChild(el("td", Number(w.tokens_per_s).toFixed(1)));
    body.appendChild(tr);
  }
}

// Where work flows, per worker class: answered, failed, and escalated to the class.
function drawFlow(s) {
  const p = $("flow");
  clear(p);
  for (const f of s.flow || []) {
    const item = el("span", null, "flow");
    item.appendChild(el("b", f.worker_class));
    item.appendChild(document.createTextNode(` ${f.done} done, ${f.failed} failed`
      + (f.escalated ? `, ${f.escalated} escalated to it` : "")));
    p.appendChild(item);
  }
  if (s.unmet) {
    p.appendChild(el("span", `${s.unmet} open task(s) no live worker meets`, "flow unmet"));
  }
}

function drawChart(s) {
  const c = $("chart");
  clear(c);
  const values = s.throughput;
  const top = Math.max(1, ...values);
  const w = 600 / values.length;
  values.forEach((v, i) => {
    const h = (v / top) * 110;
    const bar = svg("rect", { x: i * w + 1, y: 118 - h, width: Math.max(w - 2, 1), height: h });
    bar.appendChild(svg("title", {}, `${v} completed`));
    c.appendChild(bar);
  });
  c.appendChild(svg("line", { x1: 0, y1: 118.5, x2: 600, y2: 118.5, stroke: "#c3c9d4" }));
  const perMin = values.slice(-Math.round(60 / s.bucket_s)).reduce((a, b) => a + b, 0);
  $("per-min").textContent = `${perMin} completed in the last minute · bars of ${s.bucket_s} s, `
    + `last ${Math.round((values.length * s.bucket_s) / 60)} min`;
}

function drawEvents(s) {
  for (const e of s.events) view.events.set(e.id, e);
  const ids = [...view.events.keys()].sort(compareIds);
  for (const id of ids.slice(0, Math.max(0, ids.length - EVENTS_KEPT))) view.events.delete(id);
  const list = $("events");
  clear(list);
  for (const id of ids.slice(-EVENTS_KEPT).reverse()) {
    const e = view.events.get(id);
    if (!e) continue;
    const li = document.createElement("li");
    li.appendChild(el("span", clock(e.at) + " ", "t"));
    li.appendChild(el("span", e.type + " ", "ty"));
    if (e.task) li.appendChild(el("span", "#" + e.task + " "));
    li.appendChild(el("span", e.who + " ", e.who.startsWith("person:") ? "person" : ""));
    if (e.detail) li.appendChild(el("span", e.detail, "muted"));
    list.appendChild(li);
  }
}

function compareIds(a, b) {
  const [am, as] = a.split("-").map(Number), [bm, bs] = b.split("-").map(Number);
  return am - bm || as - bs;
}

function drawAnswer(s) {
  const checked = s.check ? ` check ${s.check} after ${s.checks}` : "";
  $("outcome").textContent = (s.state === "done" ? `(${s.outcome})` : "") + checked;
  const a = $("answer");
  if (s.answer !== null) {
    a.textContent = s.answer;
    a.className = "";
  } else {
    a.textContent = s.state === "done" ? "" : "The root's answer appears here once the swarm is done.";
    a.className = "muted";
  }
}

// -- steering -------------------------------------------------------------------------------------

function say(text, error) {
  const m = $("message");
  m.textContent = text;
  m.className = error ? "error" : "";
}

async function post(action, body) {
  try {
    const res = await fetch(`/api/swarms/${encodeURIComponent(view.id)}/${action}`, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(Object.assign({ who: who() }, body)),
    });
    const data = await res.json().catch(() => ({ error: res.statusText }));
    if (res.ok) say(data.message, false);
    else say(`refused (${res.status}): ${data.error}`, true);
  } catch (e) {
    say(String(e.message || e), true);
  }
}

function wire() {
  $("pause").addEventListener("click", () => post("pause", {}));
  $("resume").addEventListener("click", () => post("resume", {}));
  $("cancel-all").addEventListener("click", () => {
    if (confirm("Cancel the whole swarm?")) post("cancel", { all: true });
  });
  $("boost").addEventListener("click", () => {
    const amount = $("boost-amount").value.trim();
    post("boost", amount ? { task: view.selected, amount: Number(amount) } : { task: view.selected });
  });
  $("cancel-task").addEventListener("click", () => {
    if (confirm(`Cancel task #${view.selected} and everything under it?`)) {
      post("cancel", { task: view.selected });
    }
  });
  $("inject").addEventListener("click", () => {
    const row = view.snap && view.snap.tree.find((r) => r.id === view.selected);
    const fallback = row && row.state === "waiting" ? row.id : "0";
    post("inject", {
      parent: $("inject-parent").value.trim() || fallback,
      title: $("inject-title").value,
      detail: $("inject-detail").value,
      tags: $("inject-tags").value,
      min_strength: $("inject-strength").value.trim(),
      needs_code: $("inject-code").checked,
    });
  });
}

function wireIdentity() {
  const t = $("token");
  t.value = token();
  t.addEventListener("change", () => {
    sessionStorage.setItem("swarm-token", t.value.trim());
    if (view.abort) view.abort.abort();
  });
  const w = $("who");
  w.value = who();
  w.addEventListener("change", () => localStorage.setItem("swarm-who", w.value.trim()));
}

function legend() {
  const box = $("legend");
  for (const state of Object.keys(SHAPES)) {
    const s = svg("svg", { width: 16, height: 16, viewBox: "-8 -8 16 16" });
    const g = svg("g", { fill: state === "open" ? heatColour(0.33) : "#b8c0cc", stroke: "#4b5363" });
    SHAPES[state](g, 5);
    s.appendChild(g);
    box.appendChild(s);
    box.appendChild(document.createTextNode(" " + state + "  "));
  }
  box.appendChild(document.createTextNode(" · colour: pheromone · gold: answer delivered"));
}

function main() {
  takeTokenFromHash();
  wireIdentity();
  const m = /^\/swarm\/([^/]+)$/.exec(location.pathname);
  if (!m) { showList(); return; }
  view.id = decodeURIComponent(m[1]);
  $("swarm-view").hidden = false;
  legend();
  wire();
  stream();
}

main();
