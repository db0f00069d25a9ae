// Trace search, and one trace: its services as a graph and its waterfall with span details.
import { $, $$, api, colour, esc, fail, kv, link, ms, navigate, when } from "./lib.js";
import { graph } from "./topology.js";

// Every search field is a URL parameter of the same name: a search is a deep link.
export const searchFields = ["bk", "service", "operation", "errorType", "event", "lookback", "minDuration", "maxDuration", "errors", "dyed", "limit"];

export async function searchPage(el, q) {
  const v = (f) => esc(q.get(f) ?? "");
  const sel = (f, opts) => opts.map(([val, label]) => `<option value="${val}"${(q.get(f) ?? "") === val ? " selected" : ""}>${label}</option>`).join("");
  el.innerHTML = `<h2>Traces</h2>
    <form class="bar" id="search">
      <label>business key<input name="bk" placeholder="order_id:12345" value="${v("bk")}"></label>
      <label>service<input name="service" list="service-list" value="${v("service")}"></label>
      <label>operation<input name="operation" list="operation-list" value="${v("operation")}"></label>
      <label>exception type<input name="errorType" placeholder="*payment.DeclinedError" value="${v("errorType")}"></label>
      <label>event<input name="event" placeholder="exception" value="${v("event")}"></label>
      <label>lookback<select name="lookback">${sel("lookback", [["", "24h (default)"], ["15m", "15m"], ["1h", "1h"], ["6h", "6h"], ["72h", "72h"], ["168h", "168h"]])}</select></label>
      <label>min duration<input name="minDuration" placeholder="100ms" size="7" value="${v("minDuration")}"></label>
      <label>max duration<input name="maxDuration" placeholder="2s" size="7" value="${v("maxDuration")}"></label>
      <label>errors<select name="errors">${sel("errors", [["", "any"], ["true", "only"]])}</select></label>
      <label>load tests<select name="dyed">${sel("dyed", [["", "exclude"], ["include", "include"], ["only", "only"]])}</select></label>
      <label>limit<input name="limit" size="4" value="${esc(q.get("limit") ?? "20")}"></label>
      <button>Search</button>
    </form>
    <datalist id="service-list"></datalist><datalist id="operation-list"></datalist>
    <div class="msg" id="msg">Search by a business key, a service, an exception type or an event.</div>
    <div id="results"></div>`;
  const form = $("#search", el);
  form.onsubmit = (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, val] of new FormData(form)) if (val && !(k === "limit" && val === "20")) p.append(k, val);
    navigate("?" + p);
  };
  api("/api/v1/services").then((s) => {
    $("#service-list", el).innerHTML = s.services.map((x) => `<option value="${esc(x.name)}">`).join("");
    const ops = (name) => (s.services.find((x) => x.name === name)?.operations || []).map((o) => `<option value="${esc(o)}">`).join("");
    $("#operation-list", el).innerHTML = ops(form.service.value);
    form.service.onchange = () => ($("#operation-list", el).innerHTML = ops(form.service.value));
  }, () => {});
  const p = new URLSearchParams();
  for (const f of searchFields) for (const val of q.getAll(f)) p.append(f, val);
  if (![...p.keys()].some((k) => ["bk", "service", "errorType", "event"].includes(k))) return;
  $("#msg", el).textContent = "searching…";
  try {
    const res = await api("/api/v1/traces?" + p);
    $("#msg", el).textContent = (res.traces ||= []).length + " trace(s)";
    $("#results", el).innerHTML = "<table id=\"trace-list\"><tr><th>start</th><th>root</th><th>services</th><th>spans</th><th>duration</th><th>business keys</th></tr>" +
      res.traces.map((t) => `<tr><td><a href="${link({ trace: t.trace_id })}">${esc(when(t.start))}</a></td>
        <td>${esc(t.root_service)} ${esc(t.root_operation)}</td><td>${t.services.map(badge).join("")}</td>
        <td>${t.span_count}${t.error_count ? ` <span class="err">${t.error_count} err</span>` : ""}</td><td>${ms(t.duration_nano)}</td>
        <td class="muted">${esc(kv(t.business_keys))}${t.dyed ? " · load test" : ""}</td></tr>`).join("") + "</table>";
  } catch (err) {
    fail($("#msg", el), err);
  }
}

const badge = (s) => `<span class="svc" style="background:${colour(s)}">${esc(s)}</span>`;

export async function tracePage(el, q) {
  const id = q.get("trace");
  el.innerHTML = `<div class="msg">loading trace ${esc(id)}…</div>`;
  let t;
  try {
    t = await api("/api/v1/traces/" + encodeURIComponent(id));
  } catch (err) {
    return fail(el, err);
  }
  const spans = [];
  const walk = (s, depth, parent) => {
    spans.push({ s, depth, parent });
    for (const c of s.children || []) walk(c, depth + 1, s);
  };
  t.roots.forEach((r) => walk(r, 0, null));
  el.innerHTML = `<h2>Trace <code>${esc(t.trace_id)}</code></h2>
    <div class="msg">${when(t.start)} · ${t.span_count} spans${t.error_count ? ` · <span class="err">${t.error_count} failed</span>` : ""} · ${t.services.map(badge).join("")} · ${ms(t.duration_nano)}
      · <a href="#" id="back">back</a></div>
    <div class="graph small" id="trace-graph"></div>
    <div class="wf" id="waterfall"></div>`;
  $("#back", el).onclick = (e) => {
    e.preventDefault();
    history.back();
  };
  traceGraph($("#trace-graph", el), spans);
  waterfall($("#waterfall", el), t, spans);
}

// traceGraph shows the services one trace went through; a client span nobody answered is a
// call to something uninstrumented (its peer: a database, a cache).
function traceGraph(el, spans) {
  const nodes = new Map();
  const edges = new Map();
  const edge = (from, to, s) => {
    const e = edges.get(from + "→" + to) || { source: from, target: to, calls: 0, nanos: 0 };
    e.calls++;
    e.nanos += s.duration_nano;
    edges.set(from + "→" + to, e);
  };
  for (const { s, parent } of spans) {
    nodes.set(s.service, { id: s.service });
    if (parent && parent.service !== s.service) edge(parent.service, s.service, s);
    if (s.kind === "CLIENT" && !(s.children || []).length) {
      const peer = s.peer || s.tags?.["db.system"] || "external";
      if (!nodes.has(peer)) nodes.set(peer, { id: peer, virtual: true });
      edge(s.service, peer, s);
    }
  }
  graph(el, [...nodes.values()], [...edges.values()].map((e) => ({ ...e, label: `${e.calls} call${e.calls > 1 ? "s" : ""} · ${ms(e.nanos)}` })));
}

// waterfall draws each span's bar from its exact nanosecond offset: a Date has only
// milliseconds, and the demo's traces last a few of them.
function waterfall(el, t, spans) {
  const total = Math.max(t.duration_nano, 1);
  const pos = (ns) => (ns / total) * 100;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => `<span style="left:${f * 100}%">${ms(f * total)}</span>`).join("");
  el.innerHTML = `<div class="wf-row head"><div>service · operation</div><div class="track">${ticks}</div><div>duration</div></div>` +
    spans.map(({ s, depth, parent }) => {
      const bad = s.status === "ERROR" || s.error_type;
      return `<div class="wf-row" data-span="${esc(s.span_id)}">
        <div style="padding-left:${6 + depth * 16}px" title="${esc(s.service + " " + s.operation)}">${badge(s.service)}<b>${esc(s.operation)}</b>
          <span class="muted">${esc(s.kind.toLowerCase())}${s.orphan ? " · parent missing" : ""}</span>${bad ? ` <span class="err">${esc(s.error_type || "error")}</span>` : ""}</div>
        <div class="track"><span class="span-bar${bad ? " bad" : ""}" data-span="${esc(s.span_id)}" data-parent="${esc(parent?.span_id ?? "")}"
          style="left:${pos(s.offset_nano)}%;width:${pos(s.duration_nano)}%"></span></div>
        <div>${ms(s.duration_nano)}</div></div>
        <div class="wf-detail" data-detail="${esc(s.span_id)}" hidden></div>`;
    }).join("");
  const byID = new Map(spans.map((x) => [x.s.span_id, x.s]));
  const toggle = (id) => {
    const d = $(`[data-detail="${CSS.escape(id)}"]`, el);
    d.hidden = !d.hidden;
    if (!d.hidden && !d.innerHTML) spanDetail(d, byID.get(id));
  };
  $$(".wf-row[data-span]", el).forEach((row) => (row.onclick = () => toggle(row.dataset.span)));
  // Failed spans open by themselves: the exception is what one came for.
  for (const { s } of spans) if (s.status === "ERROR" || s.error_type) toggle(s.span_id);
}

function spanDetail(d, s) {
  const rows = [
    ["span", s.span_id + (s.parent_span_id ? " (parent " + s.parent_span_id + ")" : "")],
    ["service", `${s.domain} / ${s.service} on ${s.host || "?"}`],
    ["start", `${when(s.start)} (+${ms(s.offset_nano)})`],
    ["status", s.status + (s.status_code ? " " + s.status_code : "") + (s.error_type ? " · " + s.error_type : "")],
    ["peer", s.peer], ["sample rate", s.sample_rate], ["agent", s.agent_version],
    ["business keys", kv(s.business_keys)],
    ...Object.entries(s.tags || {}).map(([k, v]) => ["tag " + k, v]),
  ].filter(([, v]) => v !== undefined && v !== "");
  d.innerHTML = `<dl class="kv">${rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}</dl>` +
    (s.events || []).map((ev) => {
      const attrs = { ...ev.attributes };
      const stack = attrs["exception.stacktrace"];
      delete attrs["exception.stacktrace"];
      return `<h3>event ${esc(ev.name)} <span class="muted">${esc(when(ev.time))}</span></h3><dl class="kv">${Object.entries(attrs).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}</dl>` +
        (stack ? `<pre class="stack">${esc(stack)}</pre>` : "");
    }).join("") + `<div class="stacks"></div>`;
  if ((s.events || []).some((ev) => ev.name === "exception" && !ev.attributes?.["exception.stacktrace"])) stacks($(".stacks", d), s);
}

// stacks finds the exception events the agent sent for this span (they carry the stack; the
// span's own event has only the type and message).
async function stacks(el, s) {
  const from = new Date(s.start).getTime() - 1000;
  const to = from + 2000 + s.duration_nano / 1e6;
  try {
    const res = await api(`/api/v1/events?service=${encodeURIComponent(s.service)}&type=exception&from=${from}&to=${Math.ceil(to)}&limit=1000`);
    const mine = res.events.filter((e) => e.span_id === s.span_id);
    el.innerHTML = mine.map((e) => `<h3>exception ${esc(e.name)}: ${esc(e.message)}</h3><pre class="stack">${esc(e.stack || "(no stack)")}</pre>`).join("");
  } catch (err) {
    el.innerHTML = `<span class="muted">stack: ${esc(err.message)}</span>`;
  }
}
