// Helpers every page shares: the JSON API, admin writes, escaping and formatting, ranges.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

export const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }[c]));

// ms formats integer nanoseconds.
export const ms = (ns) => (ns / 1e6).toFixed(ns < 1e7 ? 2 : 1) + " ms";

// when formats a JSON time; Go's zero time is "never".
export const when = (t) => (t && !String(t).startsWith("0001") ? new Date(t).toLocaleString() : "");

// ago says how long before now a time was: "12 s ago".
export function ago(t) {
  if (!t || String(t).startsWith("0001")) return "";
  const s = Math.round((Date.now() - new Date(t)) / 1000);
  if (s < 120) return s + " s ago";
  if (s < 7200) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

export const kv = (m) => Object.entries(m || {}).map(([k, v]) => k + "=" + v).join(" ");

// link builds a deep link to a page of this UI.
export function link(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  return "?" + p;
}

// navigate opens a page of this UI without reloading it (app.js routes on popstate).
export function navigate(href) {
  history.pushState(null, "", href);
  dispatchEvent(new PopStateEvent("popstate"));
}

// Service colours: the same service has the same colour on every page.
const palette = ["#3450d8", "#1b7f3b", "#b3541e", "#7b3fb5", "#0f7c8c", "#a3256b", "#5a6b1f", "#8c5a0f"];
export function colour(name) {
  let h = 0;
  for (const c of String(name)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return palette[h % palette.length];
}

async function answer(r) {
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(body.error || r.status + " " + r.statusText), { status: r.status });
  return body;
}

export async function api(path) {
  return answer(await fetch(path));
}

const tokenKey = "mercury.adminToken";

// write sends an admin request. The token is asked for once (kept in sessionStorage, this tab
// only) and asked for again when the server refuses it.
export async function write(method, path, body) {
  for (let tries = 0; tries < 3; tries++) {
    const token = sessionStorage.getItem(tokenKey) || (await askToken());
    const r = await fetch(path, {
      method,
      headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status === 401) {
      sessionStorage.removeItem(tokenKey);
      continue;
    }
    return answer(r);
  }
  throw new Error("the admin token was refused");
}

function askToken() {
  const d = $("#token-dialog");
  const input = d.querySelector("input");
  input.value = "";
  d.returnValue = "";
  d.showModal();
  return new Promise((resolve, reject) => {
    d.onclose = () => {
      const token = d.returnValue === "ok" ? input.value.trim() : "";
      if (!token) return reject(new Error("no admin token given"));
      sessionStorage.setItem(tokenKey, token);
      resolve(token);
    };
  });
}

// Ranges a page can show, and the metric step that keeps a chart to a few hundred points.
export const ranges = ["15m", "1h", "6h", "24h", "72h", "168h"];
const hours = { "15m": 0.25, "1h": 1, "6h": 6, "24h": 24, "72h": 72, "168h": 168 };

// timeWindow turns a page's range (or its start/end) into API parameters.
export function timeWindow(q, dflt) {
  const range = hours[q.get("range")] ? q.get("range") : dflt;
  const end = q.get("end") ? new Date(isNaN(q.get("end")) ? q.get("end") : +q.get("end")) : new Date();
  const start = q.get("start") ? new Date(isNaN(q.get("start")) ? q.get("start") : +q.get("start")) : new Date(end - hours[range] * 3600e3);
  const h = (end - start) / 3600e3;
  return { range, start: start.getTime(), end: end.getTime(), step: q.get("step") || (h <= 6 ? "1m" : h <= 48 ? "5m" : "1h") };
}

export function options(values, selected, labels = {}) {
  return values.map((v) => `<option value="${esc(v)}"${v === selected ? " selected" : ""}>${esc(labels[v] ?? v)}</option>`).join("");
}

export function fail(el, err) {
  el.innerHTML = `<div class="msg err">${esc(err.message)}</div>`;
}
