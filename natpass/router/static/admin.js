// natpass admin page: refreshes the server-rendered values from /api/status and /api/flows and
// lets the passthrough switches be flipped (POST /api/switch/<name>, bearer token on HTTP).
// Data is only ever inserted as text, never as HTML.
"use strict";

const REFRESH_MS = 3000;
const TOKEN_KEY = "natpass-admin-token";
const SWITCHES = ["pptp", "ipsec", "l2tp"];
const body = document.body;
const writable = body.dataset.writable === "true";
const flowLimit = Number(body.dataset.flowLimit) || 50;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function cell(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(1);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function table(rows, empty, maxColumns = 10) {
  if (!rows.length) return el("p", empty, "empty");
  const columns = [];
  for (const row of rows) for (const key of Object.keys(row))
    if (!columns.includes(key) && columns.length < maxColumns) columns.push(key);
  const t = el("table"), head = el("tr"), tbody = el("tbody");
  for (const c of columns) head.appendChild(el("th", c));
  t.appendChild(el("thead")).appendChild(head);
  for (const row of rows) {
    const tr = el("tr");
    for (const c of columns) tr.appendChild(el("td", cell(row[c])));
    tbody.appendChild(tr);
  }
  t.appendChild(tbody);
  return t;
}

function pairs(obj, keyName, valueName, empty) {
  if (!obj || typeof obj !== "object") return el("p", empty, "empty");
  const rows = Object.entries(obj)
    .sort((a, b) => (typeof b[1] === "number" ? b[1] : 0) - (typeof a[1] === "number" ? a[1] : 0)
      || String(a[0]).localeCompare(String(b[0])))
    .map(([k, v]) => ({ [keyName]: k, [valueName]: v }));
  return table(rows, empty);
}

function replace(id, node) {
  const target = document.getElementById(id);
  if (target) target.replaceChildren(node);
}

function setText(id, text) {
  const target = document.getElementById(id);
  if (target) target.textContent = text;
}

function duration(seconds) {
  if (typeof seconds !== "number") return "?";
  let s = Math.floor(seconds);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const pad = (n) => String(n).padStart(2, "0");
  return (d ? d + "d " : "") + pad(h) + ":" + pad(m) + ":" + pad(s);
}

function switchStates(status) {
  const raw = status.switches, states = {};
  if (Array.isArray(raw)) {
    for (const item of raw) if (item && item.name) states[item.name] = Boolean(item.on ?? item.enabled);
  } else if (raw && typeof raw === "object") {
    for (const [name, value] of Object.entries(raw)) {
      if (name === "strict") continue;
      const v = value && typeof value === "object" ? (value.on ?? value.enabled) : value;
      if (typeof v === "boolean") states[name] = v;
    }
  }
  return states;
}

function helpers(status) {
  const raw = status.helpers, out = {};
  const items = Array.isArray(raw) ? raw.map((h) => [h && h.name, h])
    : raw && typeof raw === "object" ? Object.entries(raw) : [];
  for (const [name, h] of items) {
    if (!name || !h || typeof h !== "object") continue;
    out[name] = { stats: h.stats || {}, tunnels: Array.isArray(h.tunnels) ? h.tunnels : [] };
  }
  return out;
}

function flowsByProto(status) {
  const raw = status.flows;
  if (typeof raw === "number") return [raw, {}];
  if (!raw || typeof raw !== "object") return [null, {}];
  let by = ["by_proto", "by_protocol", "protocols", "proto"].map((k) => raw[k]).find((v) => v && typeof v === "object");
  if (!by) by = Object.fromEntries(Object.entries(raw).filter(([k]) => k !== "total"));
  const protos = Object.fromEntries(Object.entries(by).filter(([, v]) => typeof v === "number"));
  const total = typeof raw.total === "number" ? raw.total : Object.values(protos).reduce((a, b) => a + b, 0);
  return [total, protos];
}

const PROTO_NAMES = { 1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah" };

// Same as compact_flow() in admin.py: one "address:port" column per endpoint.
function compactFlow(flow) {
  const out = {};
  if ("proto" in flow) out.proto = PROTO_NAMES[flow.proto] || flow.proto;
  for (const side of ["lan", "wan", "remote"]) {
    const addr = flow[side + "_addr"], port = flow[side + "_port"];
    if (addr !== undefined && addr !== null) out[side] = port ? addr + ":" + port : String(addr);
  }
  for (const [key, value] of Object.entries(flow)) {
    if (key === "proto" || /^(lan|wan|remote)_(addr|port)$/.test(key)) continue;
    out[key] = value;
  }
  return out;
}

function showStatus(status) {
  const states = switchStates(status), hs = helpers(status);
  for (const name of SWITCHES) {
    const card = document.getElementById("switch-" + name);
    if (!card || card.classList.contains("busy")) continue;
    const on = Boolean(states[name]);
    card.classList.toggle("on", on);
    card.classList.toggle("off", !on);
    card.querySelector("input").checked = on;
    card.querySelector(".state").textContent = on ? "ON" : "OFF";
    card.querySelector(".tunnel-count").textContent = String((hs[name] || { tunnels: [] }).tunnels.length);
  }
  setText("uptime", duration(status.uptime ?? status.uptime_seconds));
  const [total, protos] = flowsByProto(status);
  if (total !== null) setText("flow-total", String(total));
  setText("updated", new Date().toISOString().replace("T", " ").slice(0, 19) + " UTC");
  replace("counters", pairs(status.counters, "counter", "value", "no counters yet"));
  replace("drops", pairs(status.drops, "reason", "packets", "no drops"));
  const tunnels = [];
  for (const name of Object.keys(hs).sort())
    for (const t of hs[name].tunnels) if (t && typeof t === "object") tunnels.push({ switch: name, ...t });
  replace("tunnels", table(tunnels, "no live tunnels"));
  const ordered = Object.entries(protos).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  setText("flow-summary", ordered.length ? "by protocol: " + ordered.map(([p, n]) => p + " " + n).join(" · ") : "");
}

function message(text, error) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.classList.toggle("error", Boolean(error));
}

let failures = 0;
async function refresh() {
  if (document.hidden) return;
  try {
    const [s, f] = await Promise.all([fetch("/api/status"), fetch("/api/flows?limit=" + flowLimit)]);
    if (!s.ok) throw new Error("status: HTTP " + s.status);
    showStatus(await s.json());
    if (f.ok) replace("flows", table(((await f.json()).flows || []).map(compactFlow), "no connections"));
    if (failures) message("");
    failures = 0;
  } catch (err) {
    failures += 1;
    message("Router not answering (" + err.message + "); retrying.", true);
  }
}

async function flip(name, input) {
  const card = document.getElementById("switch-" + name);
  const on = input.checked;
  card.classList.add("busy");
  try {
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const headers = { "Content-Type": "application/json" };
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (token) headers.Authorization = "Bearer " + token;
      const r = await fetch("/api/switch/" + name, { method: "POST", headers, body: JSON.stringify({ on }) });
      const answer = await r.json().catch(() => ({ error: "HTTP " + r.status }));
      if (r.status === 401 && attempt === 0) {
        const given = window.prompt("Admin token (from the router's admin.token file):");
        if (!given) {
          message(name.toUpperCase() + " not changed: switching needs the admin token.", true);
          break;
        }
        sessionStorage.setItem(TOKEN_KEY, given.trim());
        continue;
      }
      if (!r.ok) throw new Error(answer.error || "HTTP " + r.status);
      message(name.toUpperCase() + " passthrough " + (on ? "on" : "off")
        + (answer.torn_down ? " (" + answer.torn_down + (answer.torn_down === 1 ? " tunnel" : " tunnels")
          + " closed)" : "") + ".", false);
      break;
    }
  } catch (err) {
    message("Could not switch " + name + ": " + err.message, true);
  } finally {
    card.classList.remove("busy");
    await refresh();
  }
}

if (writable) {
  for (const name of SWITCHES) {
    const card = document.getElementById("switch-" + name);
    if (!card) continue;
    const input = card.querySelector("input");
    input.disabled = false;
    input.addEventListener("change", () => flip(name, input));
  }
}
setInterval(refresh, REFRESH_MS);
document.addEventListener("visibilitychange", refresh);
