// The dashboard: a hash-routed single page over the /v1 API, called with
// the session cookie (and the CSRF token on every change).
import { verifyInclusion } from "./merkle.js";

const $ = (sel, root = document) => root.querySelector(sel);
let me = null; // {name, read_only, csrf}
let stream = null; // EventSource of /ui/events
const listeners = new Set(); // live ledger listeners of the current page

// h builds an element: h("td", {class: "num"}, "1.00", child…). Text is
// always set as text, never parsed as HTML.
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k != null && k !== false) el.append(k instanceof Node ? k : String(k));
  return el;
}
const svg = (tag, attrs = {}, ...kids) => {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const k of kids) el.append(k instanceof Node ? k : String(k));
  return el;
};

class APIError extends Error { constructor(status, p) { super(p?.detail || `HTTP ${status}`); this.status = status; this.problem = p; } }

// A page's reads belong to the page that made them: leavePage() aborts the
// ones still in flight before another page (or the sign-in form) is drawn.
// Otherwise a slow page (the Overview makes six requests) that finishes
// after a page opened later would draw itself over it. Changes (POST,
// DELETE) are never aborted.
let pageReads = new AbortController();
function leavePage() { pageReads.abort(); pageReads = new AbortController(); }
const isAbort = (e) => e?.name === "AbortError";

async function api(path, { method = "GET", body } = {}) {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = me?.csrf || "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const signal = method === "GET" ? pageReads.signal : undefined;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin", signal });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (res.status === 401 && !path.startsWith("/ui/session")) { showSignIn("Your session has ended: sign in again."); }
  if (!res.ok) throw new APIError(res.status, data);
  return data;
}

// Amounts are decimal strings; nanos turns one into a BigInt of 10⁻⁹ units
// for comparisons and bar lengths only. Shown amounts are the API's text.
function nanos(s) {
  const m = /^(-?)(\d+)(?:\.(\d{1,9}))?$/.exec(String(s ?? "0"));
  if (!m) return 0n;
  const v = BigInt(m[2]) * 1000000000n + BigInt((m[3] || "").padEnd(9, "0"));
  return m[1] ? -v : v;
}
function fromNanos(n) {
  const neg = n < 0n; if (neg) n = -n;
  let frac = (n % 1000000000n).toString().padStart(9, "0").replace(/0+$/, "");
  if (frac.length < 2) frac = frac.padEnd(2, "0");
  return `${neg ? "-" : ""}${n / 1000000000n}.${frac}`;
}
// share is part/whole in basis points (0–10000), for widths and heights.
function share(part, whole) { if (whole <= 0n || part <= 0n) return 0; const r = (part * 10000n) / whole; return Number(r > 10000n ? 10000n : r); }
const money = (amount, cur) => `${amount} ${cur || ""}`.trim();
const fmtTime = (t) => (t ? new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "—");

function setPage(title, ...kids) {
  const page = $("#page");
  page.replaceChildren(h("h1", { tabindex: "-1" }, title), ...kids);
  document.title = `${title} · Caracal`;
}
function failure(e) { return h("p", { class: "error", role: "alert" }, e.message); }

// ---- sign-in ----
function showSignIn(msg = "") {
  me = null; stream?.close(); stream = null;
  leavePage();
  $("#nav").hidden = true; $("#signout").hidden = true; $("#who").textContent = "";
  $("#page").replaceChildren();
  $("#signin").hidden = false; $("#signin-error").textContent = msg;
  $("#token").focus();
}
function signedIn(s) {
  me = s;
  $("#signin").hidden = true; $("#nav").hidden = false; $("#signout").hidden = false;
  $("#who").textContent = `${s.name}${s.read_only ? " (read-only)" : ""}`;
  openStream();
  route();
}
$("#signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try { signedIn(await api("/ui/session", { method: "POST", body: { token: $("#token").value } })); $("#token").value = ""; }
  catch (e) { $("#signin-error").textContent = e.message; }
});
$("#signout").addEventListener("click", async () => { try { await api("/ui/session", { method: "DELETE" }); } finally { showSignIn("Signed out."); } });

// A page left for another keeps no stream open: the browser may keep the
// page in its back/forward cache, and each open stream holds one of the
// few connections a browser allows per server over HTTP/1.1.
addEventListener("pagehide", () => { stream?.close(); stream = null; });
addEventListener("pageshow", (e) => { if (e.persisted && me) { openStream(); route(); } });

function openStream() {
  stream?.close();
  stream = new EventSource("/ui/events");
  stream.addEventListener("ledger", (m) => { const ev = JSON.parse(m.data); for (const f of listeners) f(ev); });
}

// ---- routing ----
const routes = { overview, budgets, ledger, agents, agent, integrity };
function route() {
  if (!me) return;
  leavePage();
  listeners.clear();
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const [name, ...rest] = path.split("/");
  const fn = routes[name] || overview;
  for (const a of document.querySelectorAll("#nav a")) {
    const target = a.getAttribute("href").slice(2);
    if (target === (name === "agent" ? "agents" : name || "overview")) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  return fn(new URLSearchParams(query || ""), ...rest.map(decodeURIComponent)).catch((e) => { if (!isAbort(e)) $("#page").append(failure(e)); });
}
// A page reached by a link takes the focus to its heading, so keyboard and
// screen-reader users start at the new content.
addEventListener("hashchange", () => route()?.then(() => $("#page h1")?.focus()));

// ---- Overview ----
const windows = { today: "Today (UTC)", "7d": "Last 7 days", "30d": "Last 30 days" };
function windowStart(w) {
  const d = new Date(); d.setUTCHours(0, 0, 0, 0);
  if (w === "7d") d.setUTCDate(d.getUTCDate() - 6);
  if (w === "30d") d.setUTCDate(d.getUTCDate() - 29);
  return d;
}
function summaryTable(rows, label) {
  if (!rows.length) return h("p", { class: "muted" }, "No events.");
  return h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, label), h("th", { class: "num" }, "Charged"), h("th", { class: "num" }, "Events"), h("th", { class: "num" }, "Denied"))),
    h("tbody", {}, rows.map((r) => h("tr", {}, h("td", {}, r.key), h("td", { class: "num" }, money(r.charged, r.currency)), h("td", { class: "num" }, r.events), h("td", { class: "num" }, r.denied))))));
}
function dayChart(rows, start, days) {
  const byDay = new Map();
  for (const r of rows) byDay.set(r.key, (byDay.get(r.key) || 0n) + nanos(r.charged));
  const keys = [];
  for (let i = 0; i < days; i++) { const d = new Date(start); d.setUTCDate(d.getUTCDate() + i); keys.push(d.toISOString().slice(0, 10)); }
  let max = 0n; for (const k of keys) if ((byDay.get(k) || 0n) > max) max = byDay.get(k);
  const W = 700, H = 200, pad = 24, bw = (W - pad) / keys.length;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H + 20}`, role: "img", "aria-label": "Charged per day" });
  chart.append(svg("line", { x1: pad, y1: H, x2: W, y2: H, stroke: "#9ca3af" }));
  keys.forEach((k, i) => {
    const v = byDay.get(k) || 0n, bh = (share(v, max) * (H - 10)) / 10000;
    const bar = svg("rect", { class: "bar", x: pad + i * bw + 2, y: H - bh, width: Math.max(bw - 4, 1), height: bh });
    bar.append(svg("title", {}, `${k}: ${fromNanos(v)}`));
    chart.append(bar);
    if (keys.length <= 10 || i % Math.ceil(keys.length / 10) === 0) chart.append(svg("text", { x: pad + i * bw + bw / 2, y: H + 14, "text-anchor": "middle" }, k.slice(5)));
  });
  chart.append(svg("text", { x: 0, y: 12 }, fromNanos(max)));
  return h("div", { class: "chart card" }, h("h2", {}, "Charged per day"), chart);
}
async function overview(q) {
  const w = windows[q.get("window")] ? q.get("window") : "today";
  const start = windowStart(w), since = `since=${encodeURIComponent(start.toISOString())}`;
  const chartStart = w === "today" ? windowStart("7d") : start;
  const days = Math.round((windowStart("today") - chartStart) / 864e5) + 1;
  const [byAgent, byRes, byDay, denied, unconfirmed, status] = await Promise.all([
    api(`/v1/ledger/summary?by=agent&${since}`), api(`/v1/ledger/summary?by=resource&${since}`),
    api(`/v1/ledger/summary?by=day&since=${encodeURIComponent(chartStart.toISOString())}`),
    api(`/v1/ledger/events?outcome=denied&limit=1000&${since}`), api(`/v1/ledger/events?outcome=unconfirmed&limit=1000&${since}`),
    api("/v1/merkle/status"),
  ]);
  const codes = new Map();
  for (const e of denied.events) codes.set(e.code || "(none)", (codes.get(e.code || "(none)") || 0) + 1);
  const plus = (page) => (page.next_cursor ? "+" : "");
  const total = byAgent.reduce((n, r) => n + nanos(r.charged), 0n);
  const cur = byAgent[0]?.currency || "";
  const picker = h("nav", { class: "actions", "aria-label": "Window" }, Object.entries(windows).map(([k, v]) =>
    h("a", { href: `#/overview?window=${k}`, class: `button ${k === w ? "" : "secondary"}`, "aria-current": k === w ? "true" : null }, v)));
  setPage("Overview", picker,
    h("div", { class: "grid" },
      h("div", { class: "card" }, h("div", { class: "muted" }, `Charged · ${windows[w]}`), h("div", { class: "stat", id: "total-spend" }, money(fromNanos(total), cur))),
      h("div", { class: "card" }, h("div", { class: "muted" }, "Denied"), h("div", { class: "stat" }, `${denied.events.length}${plus(denied)}`)),
      h("div", { class: "card" }, h("div", { class: "muted" }, "Unavailable (failed closed)"), h("div", { class: "stat", id: "unavailable" }, codes.get("unavailable") || 0)),
      h("div", { class: "card" }, h("div", { class: "muted" }, "Unconfirmed"), h("div", { class: "stat", id: "unconfirmed" }, `${unconfirmed.events.length}${plus(unconfirmed)}`)),
      h("div", { class: "card" }, h("div", { class: "muted" }, "Integration lag"), h("div", { class: "stat" }, `${status.lag_seconds.toFixed(1)} s`), h("div", { class: "muted" }, `${status.pending_events} pending · tree size ${status.tree_size}`))),
    dayChart(byDay, chartStart, days),
    h("div", { class: "grid" },
      h("div", {}, h("h2", {}, "By agent"), summaryTable(byAgent, "Agent")),
      h("div", {}, h("h2", {}, "By resource"), summaryTable(byRes, "Resource")),
      h("div", {}, h("h2", {}, "Denials by code"), codes.size ? h("table", {}, h("tbody", {}, [...codes].map(([c, n]) => h("tr", {}, h("td", {}, c), h("td", { class: "num" }, n))))) : h("p", { class: "muted" }, "None."))));
}

// ---- Budgets ----
function gauge(b) {
  const lim = nanos(b.limit), sp = share(nanos(b.spent), lim), rs = Math.min(share(nanos(b.reserved), lim), 10000 - sp);
  return h("div", { class: "gauge", role: "img", "aria-label": `spent ${b.spent}, reserved ${b.reserved}, remaining ${b.remaining} of ${b.limit} ${b.currency}` },
    h("div", { class: "spent", style: `width:${sp / 100}%` }), h("div", { class: "reserved", style: `width:${rs / 100}%` }));
}
function budgetCard(b) {
  return h("div", { class: "card budget", "data-policy": b.policy_id },
    h("div", {}, h("a", { href: `#/agent/${encodeURIComponent(b.agent)}` }, b.agent), ` · ${b.window}${b.window_type === "rolling" ? " (rolling)" : ""} · limit ${money(b.limit, b.currency)} · ${b.percent_used}% used`),
    gauge(b),
    h("div", { class: "legend" }, h("span", { class: "l-spent" }, `spent ${b.spent}`), h("span", { class: "l-reserved" }, `reserved ${b.reserved}`),
      h("span", { class: "l-remaining" }, "remaining "), h("strong", { class: "remaining" }, money(b.remaining, b.currency))),
    h("div", { class: "muted" }, b.resets_at ? `resets ${fmtTime(b.resets_at)}` : b.window === "total" ? "never resets" : "rolling: usage ages out"));
}
async function budgets() {
  const [bs, agentsList, dels] = await Promise.all([api("/v1/budgets"), api("/v1/agents"), api("/v1/delegations")]);
  const byAgent = new Map(); for (const b of bs) { if (!byAgent.has(b.agent_id)) byAgent.set(b.agent_id, []); byAgent.get(b.agent_id).push(b); }
  const kids = new Map(); const ids = new Set(agentsList.map((a) => a.id));
  for (const a of agentsList) { const p = a.parent_id && ids.has(a.parent_id) ? a.parent_id : ""; if (!kids.has(p)) kids.set(p, []); kids.get(p).push(a); }
  const delegated = new Map(dels.map((d) => [d.policy_id, d]));
  const node = (a) => h("li", {}, h("strong", {}, h("a", { href: `#/agent/${encodeURIComponent(a.name)}` }, a.name)), a.status === "suspended" ? h("span", { class: "error" }, " (suspended)") : "",
    (byAgent.get(a.id) || []).map((b) => { const c = budgetCard(b); const d = delegated.get(b.policy_id); if (d) c.prepend(h("div", { class: "muted" }, `delegated by ${d.parent}`)); return c; }),
    (byAgent.get(a.id) || []).length ? "" : h("div", { class: "muted" }, "no budget of its own"),
    kids.has(a.id) ? h("ul", {}, kids.get(a.id).map(node)) : "");
  setPage("Budgets", h("p", { class: "hint" }, "Every active policy, children under their parent. Spent, reserved and remaining are exact decimal amounts."),
    bs.length || agentsList.length ? h("ul", { class: "tree" }, (kids.get("") || []).map(node)) : h("p", { class: "muted" }, "No agents yet."));
}

// ---- Ledger ----
const outcomes = ["", "charged", "denied", "unconfirmed", "refunded"];
function eventRow(e) {
  return h("tr", { "data-id": e.id },
    h("td", { class: "num" }, e.seq >= 0 ? e.seq : "–"), h("td", { class: "mono" }, fmtTime(e.time)),
    h("td", {}, h("a", { href: `#/agent/${encodeURIComponent(e.agent_name)}` }, e.agent_name)), h("td", { class: "mono" }, e.resource),
    h("td", {}, e.outcome), h("td", { class: "num" }, money(e.amount, e.currency)), h("td", { class: "opt" }, e.code || ""),
    h("td", {}, e.seq >= 0 ? h("a", { href: `#/integrity?event=${encodeURIComponent(e.id)}`, "aria-label": `Verify event ${e.seq}` }, "verify") : ""));
}
function eventTable(events, id = "") {
  return h("div", { class: "scroll" }, h("table", { id: id || null }, h("thead", {}, h("tr", {}, ["Seq", "Time (UTC)", "Agent", "Resource", "Outcome", "Amount", "Code", ""].map((t, i) => h("th", { class: i === 0 || i === 5 ? "num" : i === 6 ? "opt" : null, scope: "col" }, t)))),
    h("tbody", {}, events.map(eventRow))));
}
function toRFC3339(local) { return local ? new Date(local).toISOString() : ""; }
async function ledger(q) {
  listeners.clear(); // a re-render replaces the page's listener
  const filt = new URLSearchParams();
  for (const k of ["agent", "resource", "outcome", "since", "until"]) if (q.get(k)) filt.set(k, q.get(k));
  // The page size: 100, or ?limit=N (1 to 1000, the API's bounds).
  const size = /^[0-9]{1,4}$/.test(q.get("limit") || "") ? Math.min(Math.max(Number(q.get("limit")), 1), 1000) : 100;
  const keep = new URLSearchParams(filt); if (size !== 100) keep.set("limit", String(size));
  const pageQ = new URLSearchParams(filt); pageQ.set("limit", String(size)); if (q.get("cursor")) pageQ.set("cursor", q.get("cursor"));
  const page = await api(`/v1/ledger/events?${pageQ}`);
  const field = (name, label, attrs = {}) => h("div", {}, h("label", { for: `f-${name}` }, label), h("input", { id: `f-${name}`, name, value: q.get(name) || "", ...attrs }));
  const local = (v) => (v ? new Date(v).toISOString().slice(0, 16) : "");
  const form = h("form", { class: "filters", role: "search" },
    field("agent", "Agent"), field("resource", "Resource (glob)", { placeholder: "llm:openai/*" }),
    h("div", {}, h("label", { for: "f-outcome" }, "Outcome"), h("select", { id: "f-outcome", name: "outcome" }, outcomes.map((o) => h("option", { value: o, selected: o === (q.get("outcome") || "") }, o || "any")))),
    h("div", {}, h("label", { for: "f-since" }, "Since (UTC)"), h("input", { id: "f-since", name: "since", type: "datetime-local", value: local(q.get("since")) })),
    h("div", {}, h("label", { for: "f-until" }, "Until (UTC)"), h("input", { id: "f-until", name: "until", type: "datetime-local", value: local(q.get("until")) })),
    h("button", { type: "submit" }, "Apply"), h("a", { class: "button secondary", href: "#/ledger" }, "Clear"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const n = new URLSearchParams(); const fd = new FormData(form);
    for (const [k, v] of fd) if (v) n.set(k, k === "since" || k === "until" ? toRFC3339(v + "Z") : v);
    location.hash = `#/ledger?${n}`;
  });
  const csv = new URLSearchParams(filt); csv.set("format", "csv");
  const table = eventTable(page.events, "ledger-table");
  const live = h("p", { class: "hint", id: "live", "aria-live": "polite" }, q.get("cursor") ? "Older page: new events are not added here." : "Live: new events appear at the top.");
  const nav = h("div", { class: "actions" },
    q.get("cursor") ? h("a", { class: "button secondary", id: "newest", href: `#/ledger?${keep}` }, "Newest") : "",
    page.next_cursor ? h("a", { class: "button secondary", id: "older", href: `#/ledger?${new URLSearchParams([...keep, ["cursor", page.next_cursor]])}` }, "Older →") : "",
    h("a", { class: "button secondary", href: `/v1/ledger/export?${csv}`, download: "ledger.csv" }, "Export CSV"));
  setPage("Ledger", form, live, table, nav);
  performance.mark("ledger-rendered"); // read by the e2e benchmark
  if (!q.get("cursor")) {
    const tbody = $("tbody", table);
    listeners.add((ev) => {
      if (filt.toString()) { ledger(q); return; } // the server applies the filters
      if (tbody.querySelector(`tr[data-id="${CSS.escape(ev.id)}"]`)) return;
      const tr = eventRow(ev); tr.classList.add("new"); tbody.prepend(tr);
      while (tbody.rows.length > size) tbody.deleteRow(-1);
      live.textContent = `Live: event ${ev.seq} arrived.`;
    });
  }
}

// ---- Agents ----
async function agents() {
  const list = await api("/v1/agents");
  setPage("Agents", list.length ? h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Owner"), h("th", {}, "Status"), h("th", { class: "opt" }, "Created"))),
    h("tbody", {}, list.map((a) => h("tr", {}, h("td", {}, h("a", { href: `#/agent/${encodeURIComponent(a.name)}` }, a.name)), h("td", {}, a.owner), h("td", {}, a.status), h("td", { class: "opt mono" }, fmtTime(a.created_at))))))) : h("p", { class: "muted" }, "No agents yet."));
}
function policyCells(p) {
  return [h("td", { class: "mono" }, p.id), h("td", {}, p.version), h("td", { class: "num" }, money(p.limit, p.currency)), h("td", {}, `${p.window} ${p.window_type} ${p.timezone}${p.delegated_from ? " (delegated)" : ""}`),
    h("td", { class: "mono" }, (p.allow || []).join(", ") || "any"), h("td", { class: "mono" }, fmtTime(p.created_at))];
}
// policyRow is a policy with a button that shows its earlier versions.
function policyRow(p) {
  const btn = h("button", { type: "button", class: "secondary", "aria-expanded": "false", onclick: async () => {
    const tr = btn.closest("tr");
    try {
      const versions = await api(`/v1/policies/${encodeURIComponent(p.id)}/history`);
      tr.after(...versions.filter((v) => v.version !== p.version).reverse().map((v) => h("tr", { class: "muted" }, ...policyCells(v), h("td", {}, v.active ? "" : "inactive"))));
      btn.disabled = true; btn.setAttribute("aria-expanded", "true");
    } catch (e) { tr.after(h("tr", {}, h("td", { colspan: 7 }, failure(e)))); }
  } }, "History");
  return h("tr", {}, ...policyCells(p), h("td", {}, btn));
}
async function agent(_q, name) {
  const path = `/v1/agents/${encodeURIComponent(name)}`;
  const [a, recent] = await Promise.all([api(path), api(`/v1/ledger/events?agent=${encodeURIComponent(name)}&limit=20`)]);
  const msg = h("div", { id: "agent-msg", role: "status", "aria-live": "polite" });
  const act = (label, cls, fn) => h("button", { type: "button", class: cls, id: `btn-${label.toLowerCase().replace(/\W+/g, "-")}`, onclick: async () => {
    try { await fn(); } catch (e) { msg.replaceChildren(failure(e)); }
  } }, label);
  const actions = me.read_only ? h("p", { class: "hint" }, "Read-only token: no changes.") : h("div", { class: "actions" },
    a.status === "suspended" ? act("Resume", "", async () => { await api(`${path}/resume`, { method: "POST" }); route(); })
      : act("Suspend", "danger", async () => { await api(`${path}/suspend`, { method: "POST" }); route(); }),
    act("Create key", "secondary", async () => {
      const k = await api(`${path}/keys`, { method: "POST", body: {} });
      await agent(_q, name); // the key list now holds the new key's prefix
      $("#agent-msg").replaceChildren(h("div", { class: "secret" }, h("p", {}, "New key (shown once — copy it now):"), h("code", { id: "new-key" }, k.key)));
    }));
  setPage(`Agent ${a.name}`, h("p", {}, `Owner ${a.owner} · status `, h("strong", { id: "agent-status" }, a.status), ` · ID `, h("code", {}, a.id)), actions, msg,
    h("h2", {}, "Budgets"), a.budgets.length ? h("div", { class: "grid" }, a.budgets.map(budgetCard)) : h("p", { class: "muted" }, "None."),
    h("h2", {}, "Policies"), a.policies.length ? h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ["Policy", "Version", "Limit", "Window", "Allow", "Since", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, a.policies.map(policyRow)))) : h("p", { class: "muted" }, "None."),
    h("h2", {}, "Keys"), a.keys.length ? h("table", {}, h("thead", {}, h("tr", {}, ["Prefix", "Created", "Expires", "Revoked"].map((t) => h("th", {}, t)))),
      h("tbody", {}, a.keys.map((k) => h("tr", {}, h("td", { class: "mono" }, `${k.prefix}…`), h("td", { class: "mono" }, fmtTime(k.created_at)), h("td", { class: "mono" }, fmtTime(k.expires_at)), h("td", { class: "mono" }, fmtTime(k.revoked_at)))))) : h("p", { class: "muted" }, "None."),
    h("h2", {}, "Recent events"), eventTable(recent.events), h("a", { href: `#/ledger?agent=${encodeURIComponent(a.name)}` }, "Full history in the ledger"));
}

// ---- Integrity ----
async function integrity(q) {
  const [status, keys] = await Promise.all([api("/v1/merkle/status"), api("/v1/merkle/keys")]);
  let cp = null; try { cp = await api("/v1/merkle/checkpoints/latest"); } catch (e) { if (e.status !== 404) throw e; }
  const active = keys.find((k) => !k.retired_at) || keys[0];
  const steps = h("ol", { class: "steps", id: "verify-steps" });
  const verdict = h("div", { id: "verdict", role: "status", "aria-live": "polite" });
  const form = h("form", { class: "filters", id: "verify-form" },
    h("div", {}, h("label", { for: "v-event" }, "Event ID"), h("input", { id: "v-event", name: "event", size: 38, value: q.get("event") || "", required: true })),
    h("div", { style: "flex:1;min-width:260px" }, h("label", { for: "v-key" }, "Verifier key (note format)"), h("input", { id: "v-key", name: "key", style: "width:100%", value: active?.public_key || "" })),
    h("button", { type: "submit", id: "verify-btn" }, "Verify this event"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault(); steps.replaceChildren(); verdict.replaceChildren();
    const id = $("#v-event").value.trim();
    const add = (ok, text) => steps.append(h("li", { class: ok ? "pass" : "fail" }, text));
    let ok = false;
    try {
      const proof = await api(`/v1/merkle/proofs/inclusion?event=${encodeURIComponent(id)}`);
      add(true, `fetched the inclusion proof: leaf ${proof.leaf_index} of ${proof.tree_size}, ${proof.proof.length} path hashes`);
      ok = await verifyInclusion(proof, $("#v-key").value, id, add);
    } catch (e) { add(false, e.message); }
    verdict.replaceChildren(h("p", { class: `verdict ${ok ? "pass" : "fail"}` }, ok ? "Verified: the event is in the signed tree." : "Verification FAILED."));
  });
  setPage("Integrity",
    h("div", { class: "grid" },
      h("div", { class: "card" }, h("div", { class: "muted" }, "Tree size"), h("div", { class: "stat" }, status.tree_size)),
      h("div", { class: "card" }, h("div", { class: "muted" }, "Integration lag"), h("div", { class: "stat" }, `${status.lag_seconds.toFixed(1)} s`), h("div", { class: "muted" }, `${status.pending_events} pending`)),
      h("div", { class: "card" }, h("div", { class: "muted" }, "Latest checkpoint"), cp ? h("div", {}, h("div", { class: "stat" }, `size ${cp.size}`), h("div", { class: "muted" }, `${fmtTime(cp.created_at)} · key ${cp.key_id}`)) : h("div", {}, "none yet"))),
    cp ? h("details", {}, h("summary", {}, "Signed checkpoint note"), h("pre", { class: "mono" }, cp.note)) : "",
    h("h2", {}, "Verify an event in this browser"),
    h("p", { class: "hint" }, "The proof and checkpoint are checked here with WebCrypto (SHA-256, Ed25519), not by the server."),
    form, verdict, steps);
  if (q.get("event") && q.get("auto") !== "0") form.requestSubmit();
}

// ---- start ----
api("/ui/session").then(signedIn, () => showSignIn());
