// Ferry's console: one page over the admin API (/api/v1/, docs/admin-api.md).
// Plain JavaScript, no build step. Every text that comes from the broker is
// put in the page as text (textContent), never as HTML.
"use strict";

const API = "/api/v1";
const POLL_MS = 2000;
const HISTORY = 90; // points kept per chart: 3 minutes at one poll every 2 s

let session = null;
let pollTimer = null;
const series = new Map(); // chart name -> [{t, v}]

// --- helpers -------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);

// put appends the page's parts, leaving out those a condition dropped (null).
function put(...children) {
  $("page").append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function fill(id, ...children) {
  const el = $(id);
  if (el) el.replaceChildren(...children.flat());
}

function flash(text, kind) {
  const el = $("flash");
  el.textContent = text;
  el.className = "flash " + (kind || "ok");
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 10000 : 4000);
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") {
    if (session && session.csrf) opts.headers["X-Ferry-CSRF"] = session.csrf;
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
  }
  const res = await fetch(path.startsWith("/") ? path : API + "/" + path, opts);
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) {
    const err = new Error((data && data.error) || res.status + " " + res.statusText);
    err.status = res.status;
    if (res.status === 401 && !path.endsWith("login")) showLogin();
    throw err;
  }
  return data;
}

// change runs an API call that changes something and reports the outcome.
async function change(method, path, body, done) {
  try {
    const out = await api(method, path, body);
    flash(done);
    await refresh();
    return out;
  } catch (e) {
    flash(e.message, "error");
    return null;
  }
}

const fmt = (n) => typeof n === "number" ? n.toLocaleString("en-US", { maximumFractionDigits: 1 }) : String(n);
const enc = encodeURIComponent;
const when = (s) => s && !s.startsWith("0001") ? new Date(s).toLocaleString() : "";

// --- charts: inline SVG from polled values --------------------------------

function record(name, v) {
  const pts = series.get(name) || [];
  pts.push({ t: Date.now(), v: Number(v) || 0 });
  while (pts.length > HISTORY) pts.shift();
  series.set(name, pts);
}

function chart(name, title, unit) {
  const pts = series.get(name) || [];
  const W = 300, H = 80;
  const max = Math.max(1, ...pts.map((p) => p.v));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  if (pts.length > 0) {
    const step = W / (HISTORY - 1);
    const off = (HISTORY - pts.length) * step;
    const xy = pts.map((p, i) => `${(off + i * step).toFixed(1)},${(H - 2 - (p.v / max) * (H - 6)).toFixed(1)}`);
    const area = document.createElementNS(svg.namespaceURI, "polygon");
    area.setAttribute("points", `${off.toFixed(1)},${H} ${xy.join(" ")} ${W},${H}`);
    const line = document.createElementNS(svg.namespaceURI, "polyline");
    line.setAttribute("points", xy.join(" "));
    svg.append(area, line);
  }
  const last = pts.length ? pts[pts.length - 1].v : 0;
  return h("div", { class: "chart", "data-chart": name },
    h("div", { class: "title" }, h("span", {}, title), h("span", {}, `${fmt(last)} ${unit} · max ${fmt(max)}`)),
    svg);
}

// --- session and routing ------------------------------------------------

function showLogin() {
  session = null;
  stopPolling();
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("page").replaceChildren();
  $("login").hidden = false;
}

function showSession(s) {
  session = s;
  $("login").hidden = true;
  $("nav").hidden = false;
  $("devmode").hidden = !s.devMode;
  $("logout").hidden = s.devMode && s.user === "";
  $("who").textContent = (s.user || "anonymous") + (s.admin ? " (admin)" : " (read only)");
  route();
}

async function start() {
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const s = await api("POST", "login", { user: $("login-user").value, password: $("login-password").value });
      $("login-password").value = "";
      showSession(s);
    } catch (e) {
      flash(e.message, "error");
    }
  });
  $("logout").addEventListener("click", async () => {
    try { await api("POST", "logout"); } catch (e) { /* logged out anyway */ }
    showLogin();
  });
  window.addEventListener("hashchange", route);
  const s = await api("GET", "session");
  if (s.loggedIn) showSession(s); else { $("devmode").hidden = !s.devMode; showLogin(); }
}

const pages = {
  overview: { render: renderOverview, poll: pollOverview },
  topics: { render: renderTopics, poll: pollTopics },
  topic: { render: renderTopic, poll: pollTopic },
  groups: { render: renderGroups, poll: pollGroups },
  group: { render: renderGroup, poll: pollGroup },
  messages: { render: renderMessages },
  clients: { render: renderClients, poll: pollClients },
  bridges: { render: renderBridges, poll: pollBridges },
};

let current = null; // {page, arg}

function route() {
  if (!session) return;
  const parts = (location.hash.replace(/^#\/?/, "") || "overview").split("/");
  let page = parts[0], arg = parts.slice(1).map(decodeURIComponent).join("/");
  if (page === "topics" && arg) page = "topic";
  if (page === "groups" && arg) page = "group";
  if (!pages[page]) page = "overview";
  current = { page, arg };
  const section = { topic: "topics", group: "groups" }[page] || page;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === section);
  $("page").replaceChildren();
  pages[page].render(arg);
  stopPolling();
  refresh();
  if (pages[page].poll) pollTimer = setInterval(refresh, POLL_MS);
}

function stopPolling() {
  if (pollTimer) clearInterval(pollTimer);
  pollTimer = null;
}

async function refresh() {
  if (!current || !pages[current.page].poll) return;
  try {
    await pages[current.page].poll(current.arg);
  } catch (e) {
    if (e.status !== 401) flash(e.message, "error");
  }
}

function adminNote() {
  return session.admin ? null : h("p", { class: "muted" }, "Changes need the admin permission (an admin line in your section of the ACL file); your changes will be refused.");
}

// --- overview ----------------------------------------------------------------

function renderOverview() {
  put(h("h1", {}, "Overview"), h("div", { id: "ov-broker" }), h("div", { class: "cards", id: "ov-cards" }), h("div", { class: "charts", id: "ov-charts" }));
}

async function pollOverview() {
  const o = await api("GET", "overview");
  record("rate", o.publishRate);
  record("lag", o.lag);
  const b = o.broker;
  fill("ov-broker", h("p", {}, "Broker ", h("strong", { id: "ov-name" }, b.name || "(unnamed)"),
    b.cluster ? ` of cluster ${b.cluster}` : "", ` · id ${b.id} · role `, h("strong", { id: "ov-role" }, b.role),
    b.version ? ` · version ${b.version}` : ""));
  const card = (label, value, id) => h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value", id }, fmt(value)));
  const conns = Object.entries(o.connections || {}).sort();
  fill("ov-cards",
    card("Messages / s", o.publishRate, "ov-rate"),
    card("Topics", o.topics, "ov-topics"),
    card("Consumer groups", o.groups, "ov-groups"),
    card("Lag (messages)", o.lag, "ov-lag"),
    card("Dead letters", o.deadLetters, "ov-dead"),
    conns.map(([p, n]) => card(p + " connections", n, "ov-conn-" + p)));
  fill("ov-charts", chart("rate", "Messages stored per second", "msg/s"), chart("lag", "Lag over all groups", "msgs"));
}

// --- topics ------------------------------------------------------------------

function renderTopics() {
  put(
    h("h1", {}, "Topics"),
    adminNote(),
    h("form", { class: "inline", id: "topic-create-form", onsubmit: createTopic },
      h("label", {}, "Name", h("input", { id: "topic-name", required: true, pattern: "[A-Za-z0-9_|\\-]{1,127}" })),
      h("label", {}, "Queues (0: default)", h("input", { id: "topic-queues", type: "number", min: 0, max: 1024, value: 0 })),
      h("button", { class: "primary", type: "submit", id: "topic-create" }, "Create topic")),
    h("label", { class: "row" }, h("span", {}, h("input", { type: "checkbox", id: "topic-internal", onchange: refresh }), " show the broker's own topics (retry, dead-letter)")),
    h("div", { id: "topics-table" }));
}

async function createTopic(ev) {
  ev.preventDefault();
  const name = $("topic-name").value;
  const out = await change("POST", "topics", { name, queues: Number($("topic-queues").value) }, `Topic ${name} created`);
  if (out) $("topic-name").value = "";
}

async function pollTopics() {
  const internal = $("topic-internal") && $("topic-internal").checked;
  const ts = await api("GET", "topics" + (internal ? "?internal=true" : ""));
  for (const t of ts) record("topic-rate:" + t.name, t.rate);
  fill("topics-table", ts.length === 0 ? h("p", { class: "muted" }, "No topics you may see.") :
    h("table", { id: "topics" },
      h("thead", {}, h("tr", {}, h("th", {}, "Topic"), h("th", {}, "Kind"), h("th", { class: "num" }, "Queues"), h("th", { class: "num" }, "Messages"), h("th", { class: "num" }, "Msg/s"), h("th", {}, ""))),
      h("tbody", {}, ts.map((t) => h("tr", { "data-topic": t.name },
        h("td", {}, h("a", { href: "#/topics/" + enc(t.name) }, t.name)),
        h("td", {}, t.kind),
        h("td", { class: "num" }, t.queues.length),
        h("td", { class: "num" }, fmt(t.messages)),
        h("td", { class: "num" }, fmt(t.rate)),
        h("td", {}, t.kind === "user" ? h("button", { class: "danger", "data-delete-topic": t.name, onclick: () => deleteTopic(t.name) }, "Delete") : ""))))));
}

async function deleteTopic(name) {
  if (!confirm(`Delete topic ${name}? Its messages stay in the log until retention removes them.`)) return;
  await change("DELETE", "topics/" + enc(name), undefined, `Topic ${name} deleted`);
}

function renderTopic(name) {
  put(
    h("h1", {}, "Topic ", h("span", { id: "topic-title" }, name)),
    h("div", { id: "topic-chart" }),
    h("div", { id: "topic-queues-table" }),
    h("h2", {}, "Messages"),
    h("form", { class: "inline", id: "browse-form", onsubmit: (ev) => { ev.preventDefault(); browse(name); } },
      h("label", {}, "Queue", h("input", { id: "browse-queue", type: "number", min: 0, value: 0 })),
      h("label", {}, "From offset", h("input", { id: "browse-offset", type: "number", min: 0, value: 0 })),
      h("label", {}, "At most", h("input", { id: "browse-max", type: "number", min: 1, max: 1024, value: 20 })),
      h("button", { class: "primary", type: "submit", id: "browse-go" }, "Read")),
    h("div", { id: "browse-results" }));
}

async function pollTopic(name) {
  const t = await api("GET", "topics/" + enc(name));
  record("topic-rate:" + name, t.rate);
  fill("topic-chart", chart("topic-rate:" + name, "Messages stored per second", "msg/s"));
  fill("topic-queues-table", h("table", { id: "topic-queues" },
    h("thead", {}, h("tr", {}, h("th", {}, "Queue"), h("th", { class: "num" }, "Min offset"), h("th", { class: "num" }, "Max offset"), h("th", { class: "num" }, "Messages"))),
    h("tbody", {}, t.queues.map((q) => h("tr", {},
      h("td", {}, q.id), h("td", { class: "num" }, q.min), h("td", { class: "num" }, q.max), h("td", { class: "num" }, q.max - q.min))))));
}

async function browse(topic) {
  try {
    const q = new URLSearchParams({ queue: $("browse-queue").value, offset: $("browse-offset").value, max: $("browse-max").value });
    const r = await api("GET", `topics/${enc(topic)}/messages?${q}`);
    fill("browse-results",
      h("p", { class: "muted" }, `Queue offsets ${r.min}..${r.max}; next read from ${r.next}.` + (r.hidden ? ` ${r.hidden} message(s) hidden: the ACL grants you no read on them.` : "")),
      r.messages.length ? r.messages.map(messageView) : h("p", { class: "muted" }, "No messages there."));
  } catch (e) {
    flash(e.message, "error");
  }
}

// --- messages ----------------------------------------------------------------

function messageView(m) {
  const text = m.body !== undefined && m.body !== null;
  const pre = h("pre", { class: "body", "data-body": m.id }, text ? m.body : m.bodyHex);
  const showAs = (hex) => { pre.textContent = hex || !text ? m.bodyHex : m.body; };
  const props = Object.entries(m.properties || {}).sort();
  return h("div", { class: "msg", "data-message": m.id },
    h("dl", {},
      h("dt", {}, "Id"), h("dd", { class: "msg-id" }, m.id),
      m.producerId ? [h("dt", {}, "Producer's id"), h("dd", { class: "msg-producer-id" }, m.producerId)] : null,
      m.originalId ? [h("dt", {}, "Original id"), h("dd", {}, m.originalId)] : null,
      h("dt", {}, "Topic / queue / offset"), h("dd", { class: "msg-where" }, `${m.topic} / ${m.queue} / ${m.queueOffset}`),
      h("dt", {}, "Subject"), h("dd", { class: "msg-subject" }, m.subject || "—"),
      h("dt", {}, "Keys"), h("dd", { class: "msg-keys" }, (m.keys || []).join(", ") || "—"),
      h("dt", {}, "Delivery count"), h("dd", { class: "msg-deliveries" }, m.deliveryCount),
      h("dt", {}, "Stored"), h("dd", {}, when(m.storeTime)),
      m.deadLetterReason ? [h("dt", {}, "Dead-letter reason"), h("dd", { class: "msg-reason" }, m.deadLetterReason)] : null),
    props.length ? h("table", { class: "props" }, h("tbody", {}, props.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))))) : null,
    h("div", { class: "row" },
      h("span", { class: "muted" }, `Body, ${m.bodySize} bytes${m.bodyTruncated ? " (cut)" : ""}: `),
      h("button", { type: "button", disabled: !text, onclick: () => showAs(false) }, "Text"),
      h("button", { type: "button", onclick: () => showAs(true) }, "Hex")),
    pre);
}

function renderMessages() {
  put(
    h("h1", {}, "Messages"),
    h("form", { class: "inline", id: "by-id-form", onsubmit: findByID },
      h("label", {}, "Message id", h("input", { id: "msg-id", size: 36, required: true })),
      h("button", { class: "primary", type: "submit", id: "msg-id-go" }, "Find by id")),
    h("form", { class: "inline", id: "by-key-form", onsubmit: findByKey },
      h("label", {}, "Key", h("input", { id: "msg-key", required: true })),
      h("label", {}, "Topic (optional)", h("input", { id: "msg-key-topic" })),
      h("button", { class: "primary", type: "submit", id: "msg-key-go" }, "Find by key")),
    h("p", { class: "muted" }, "To read a queue from an offset, open the topic."),
    h("div", { id: "msg-results" }));
}

async function findByID(ev) {
  ev.preventDefault();
  try {
    const m = await api("GET", "messages/" + enc($("msg-id").value.trim()));
    fill("msg-results", messageView(m));
  } catch (e) {
    fill("msg-results", h("p", { class: "muted" }, e.message));
  }
}

async function findByKey(ev) {
  ev.preventDefault();
  try {
    const q = new URLSearchParams({ key: $("msg-key").value });
    if ($("msg-key-topic").value) q.set("topic", $("msg-key-topic").value);
    const r = await api("GET", "messages?" + q);
    fill("msg-results",
      h("p", { class: "muted" }, `${r.messages.length} message(s), newest first.` + (r.hidden ? ` ${r.hidden} hidden by the ACL.` : "")),
      r.messages.map(messageView));
  } catch (e) {
    fill("msg-results", h("p", { class: "muted" }, e.message));
  }
}

// --- groups --------------------------------------------------------------------

function renderGroups() {
  put(h("h1", {}, "Consumer groups"), h("div", { id: "groups-table" }));
}

async function pollGroups() {
  const gs = await api("GET", "groups");
  fill("groups-table", gs.length === 0 ? h("p", { class: "muted" }, "No groups you may see.") :
    h("table", { id: "groups" },
      h("thead", {}, h("tr", {}, h("th", {}, "Group"), h("th", {}, "Mode"), h("th", { class: "num" }, "Members"), h("th", { class: "num" }, "Lag"), h("th", { class: "num" }, "Dead letters"))),
      h("tbody", {}, gs.map((g) => h("tr", { "data-group": g.name },
        h("td", {}, h("a", { href: "#/groups/" + enc(g.name) }, g.name)),
        h("td", {}, g.mode), h("td", { class: "num" }, g.members),
        h("td", { class: "num group-lag" }, fmt(g.lag)), h("td", { class: "num" }, fmt(g.deadLetters)))))));
}

function renderGroup(name) {
  const toField = () => {
    const to = $("reset-to").value;
    $("reset-time-label").hidden = to !== "time";
    for (const id of ["reset-topic-label", "reset-queue-label", "reset-offset-label"]) $(id).hidden = to !== "offset";
  };
  put(
    h("h1", {}, "Group ", h("span", { id: "group-title" }, name)),
    adminNote(),
    h("div", { class: "cards", id: "group-cards" }),
    h("div", { id: "group-chart" }),
    h("h2", {}, "Queues"),
    h("div", { id: "group-queues" }),
    h("h2", {}, "Members"),
    h("div", { id: "group-members" }),
    h("h2", {}, "Reset offsets"),
    h("form", { class: "inline", id: "reset-form", onsubmit: (ev) => { ev.preventDefault(); resetGroup(name); } },
      h("label", {}, "To", h("select", { id: "reset-to", onchange: toField },
        h("option", { value: "first" }, "first (oldest kept)"), h("option", { value: "last" }, "last (newest)"),
        h("option", { value: "time" }, "a time"), h("option", { value: "offset" }, "an offset (one queue)"))),
      h("label", { id: "reset-time-label", hidden: true }, "Time", h("input", { id: "reset-time", type: "datetime-local", step: 1 })),
      h("label", { id: "reset-topic-label", hidden: true }, "Topic", h("input", { id: "reset-topic" })),
      h("label", { id: "reset-queue-label", hidden: true }, "Queue", h("input", { id: "reset-queue", type: "number", min: 0, value: 0 })),
      h("label", { id: "reset-offset-label", hidden: true }, "Offset", h("input", { id: "reset-offset", type: "number", min: 0, value: 0 })),
      h("button", { class: "primary", type: "submit", id: "reset-go" }, "Reset")),
    h("p", { class: "muted" }, "A native consumer keeps its own position and commits it: reset a group's offsets while its consumers are stopped."),
    h("h2", {}, "Dead letters"),
    h("div", { class: "row" }, h("button", { id: "dlq-resend-all", onclick: () => resend(name, { all: true }) }, "Resend all")),
    h("div", { id: "dlq-list" }),
    h("h2", {}, "Delete"),
    h("div", { class: "row" }, h("button", { class: "danger", id: "group-delete", onclick: () => deleteGroup(name) }, "Delete group"),
      h("span", { class: "muted" }, "Forgets its offsets and drops its members; its retry and dead-letter topics stay.")));
}

async function pollGroup(name) {
  let g;
  try {
    g = await api("GET", "groups/" + enc(name));
  } catch (e) {
    if (e.status === 404) { fill("group-cards", h("p", { class: "muted" }, e.message)); return; }
    throw e;
  }
  record("group-lag:" + name, g.lag);
  const card = (label, value, id) => h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value", id }, fmt(value)));
  fill("group-cards", card("Lag", g.lag, "group-lag"), card("Members", g.members, "group-members-count"), card("Dead letters", g.deadLetters, "group-dead"), card("Mode", g.mode, "group-mode"));
  fill("group-chart", chart("group-lag:" + name, "Lag", "msgs"));
  fill("group-queues", g.queues.length === 0 ? h("p", { class: "muted" }, "No queues read yet.") :
    h("table", { id: "group-queue-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Topic"), h("th", {}, "Queue"), h("th", {}, "Owner"), h("th", { class: "num" }, "Committed"), h("th", { class: "num" }, "Max"), h("th", { class: "num" }, "Lag"), h("th", { class: "num" }, "In flight"))),
      h("tbody", {}, g.queues.map((q) => h("tr", {},
        h("td", {}, q.topic), h("td", {}, q.queue), h("td", {}, q.owner || "—"), h("td", { class: "num committed" }, q.committed),
        h("td", { class: "num" }, q.max), h("td", { class: "num" }, q.lag), h("td", { class: "num" }, q.inFlight))))));
  fill("group-members", g.memberList.length === 0 ? h("p", { class: "muted" }, "No members now.") :
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Member"), h("th", {}, "Last seen"), h("th", {}, "Queues"))),
      h("tbody", {}, g.memberList.map((m) => h("tr", {}, h("td", {}, m.id), h("td", {}, when(m.lastSeen)), h("td", {}, (m.queues || []).join(", ")))))));
  const d = await api("GET", `groups/${enc(name)}/dead-letters?max=50`);
  fill("dlq-list", d.messages.length === 0 ? h("p", { class: "muted", id: "dlq-empty" }, "No dead letters.") :
    h("table", { id: "dlq-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Offset"), h("th", {}, "Original id"), h("th", {}, "From"), h("th", {}, "Reason"), h("th", {}, "Deliveries"), h("th", {}, ""))),
      h("tbody", {}, d.messages.map((m) => h("tr", { "data-dead": m.queueOffset },
        h("td", {}, m.queueOffset), h("td", {}, m.originalId || m.id), h("td", {}, m.properties.RETRY_TOPIC || ""),
        h("td", { class: "dlq-reason" }, m.deadLetterReason || "—"), h("td", {}, m.deliveryCount),
        h("td", {}, h("button", { "data-resend": m.queueOffset, onclick: () => resend(name, { offset: m.queueOffset }) }, "Resend")))))));
}

async function resetGroup(name) {
  const to = $("reset-to").value;
  const body = { to };
  if (to === "time") {
    if (!$("reset-time").value) { flash("Pick a time", "error"); return; }
    body.time = new Date($("reset-time").value).toISOString().replace(/\.\d+Z$/, "Z");
  }
  if (to === "offset") Object.assign(body, { topic: $("reset-topic").value, queue: Number($("reset-queue").value), offset: Number($("reset-offset").value) });
  await change("POST", `groups/${enc(name)}/reset`, body, `Offsets of ${name} reset to ${to}`);
}

async function resend(name, body) {
  const out = await change("POST", `groups/${enc(name)}/dead-letters/resend`, body, "Resent");
  if (out) flash(`Resent ${out.resent} dead letter(s) of ${name}`);
}

async function deleteGroup(name) {
  if (!confirm(`Delete group ${name}?`)) return;
  try {
    await api("DELETE", "groups/" + enc(name));
    flash(`Group ${name} deleted`);
    location.hash = "#/groups";
  } catch (e) {
    flash(e.message, "error");
  }
}

// --- MQTT clients --------------------------------------------------------------

function renderClients() {
  put(h("h1", {}, "MQTT clients"), adminNote(),
    h("p", { class: "muted" }, "Listing and disconnecting clients needs the admin permission. A disconnected client may connect again; refuse it in the ACL to keep it out."),
    h("div", { id: "clients-table" }));
}

const mqttVersion = (v) => ({ 3: "3.1", 4: "3.1.1", 5: "5" })[v] || String(v);

async function pollClients() {
  let cs;
  try {
    cs = await api("GET", "clients?protocol=mqtt");
  } catch (e) {
    if (e.status === 404 || e.status === 403) { fill("clients-table", h("p", { class: "muted" }, e.message)); return; }
    throw e;
  }
  fill("clients-table", cs.length === 0 ? h("p", { class: "muted", id: "clients-empty" }, "No MQTT client connected.") :
    h("table", { id: "clients" },
      h("thead", {}, h("tr", {}, ["Client", "User", "Remote address", "Listener", "Connected since", "Subscriptions", "MQTT", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, cs.map((c) => h("tr", { "data-client": c.id },
        h("td", {}, c.id), h("td", {}, c.user || "—"), h("td", {}, c.remoteAddr), h("td", {}, c.listener || ""),
        h("td", {}, when(c.connectedAt)), h("td", { class: "num" }, c.subscriptions), h("td", {}, mqttVersion(c.protocolVersion)),
        h("td", {}, h("button", { class: "danger", "data-kick": c.id, onclick: () => kick(c.id) }, "Disconnect")))))));
}

async function kick(id) {
  if (!confirm(`Disconnect MQTT client ${id}?`)) return;
  await change("DELETE", "clients/mqtt/" + enc(id), undefined, `MQTT client ${id} disconnected`);
}

// --- bridges -------------------------------------------------------------------

function renderBridges() {
  put(h("h1", {}, "Bridges"), h("div", { class: "charts", id: "bridge-charts" }), h("div", { id: "bridges-table" }));
}

async function pollBridges() {
  let bs;
  try {
    bs = await api("GET", "/bridges");
  } catch (e) {
    if (e.status === 404) { fill("bridges-table", h("p", { class: "muted" }, "No bridges configured (the bridges section of the configuration file).")); return; }
    throw e;
  }
  for (const b of bs) record("bridge-lag:" + b.name, Math.max(0, b.lag));
  fill("bridge-charts", bs.map((b) => chart("bridge-lag:" + b.name, `Lag of ${b.name}`, "msgs")));
  fill("bridges-table", h("table", { id: "bridges" },
    h("thead", {}, h("tr", {}, ["Bridge", "Direction", "Topic", "RabbitMQ", "State", "Since", "Lag", "Forwarded", "Dead-lettered", "Last error"].map((t) => h("th", {}, t)))),
    h("tbody", {}, bs.map((b) => h("tr", {},
      h("td", {}, b.name), h("td", {}, b.direction), h("td", {}, b.topic), h("td", {}, b.rabbitmq),
      h("td", { class: "state-" + b.state }, b.state), h("td", {}, when(b.since)),
      h("td", { class: "num" }, b.lag < 0 ? "?" : fmt(b.lag)), h("td", { class: "num" }, fmt(b.forwarded)), h("td", { class: "num" }, fmt(b.dead_lettered)),
      h("td", {}, b.last_error ? `${b.last_error} (${when(b.last_error_at)})` : "—"))))));
}

start().catch((e) => flash("Cannot reach the admin API: " + e.message, "error"));
