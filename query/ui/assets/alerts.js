// The alert board: alerts by state, level and service; acknowledge, silence; one alert with its
// history, the events behind it (their stacks) and its sample traces.
import { $, $$, api, esc, fail, link, navigate, options, when, write } from "./lib.js";

export async function alertsPage(el, q) {
  const f = { state: q.get("state") || "", level: q.get("level") || "", service: q.get("service") || "" };
  el.innerHTML = `<h2>Alerts</h2>
    <form class="bar" id="alert-filter">
      <label>state<select name="state">${options(["", "firing", "resolved"], f.state, { "": "any" })}</select></label>
      <label>level<select name="level">${options(["", "warning", "alarm"], f.level, { "": "any" })}</select></label>
      <label>service<input name="service" value="${esc(f.service)}"></label>
      <label>silence for<select name="silenceFor">${options(["1h", "4h", "24h"], "1h")}</select></label>
      <button>Filter</button></form>
    <div class="msg" id="msg"></div><div id="alert-list">loading…</div>
    <h3>Silences</h3><div id="silence-list"></div>`;
  const form = $("#alert-filter", el);
  form.onsubmit = (e) => {
    e.preventDefault();
    navigate(link({ page: "alerts", state: form.state.value, level: form.level.value, service: form.service.value }));
  };
  const msg = (html) => ($("#msg", el).innerHTML = html);
  const p = new URLSearchParams(Object.entries(f).filter(([, v]) => v));
  try {
    // An empty list may come as null (a Go nil slice).
    const [alerts, silences] = (await Promise.all([api("/api/v1/alerts?" + p), api("/api/v1/silences")])).map((r) => Object.values(r)[0] || []);
    $("#alert-list", el).innerHTML = alerts.length ? `<table><tr><th>state</th><th>level</th><th>service</th><th>summary</th><th>count</th><th>since</th><th>acknowledged</th><th></th></tr>` +
      alerts.map((a) => `<tr data-alert="${esc(a.id)}"><td class="${a.state === "firing" ? "err" : "ok"}">${esc(a.state)}</td><td>${esc(a.level)}</td><td>${esc(a.service)}</td>
        <td><a href="${link({ page: "alert", id: a.id })}">${esc(a.summary)}</a></td><td>${a.count}${a.suppressed ? ` <span class="muted">(${a.suppressed} folded)</span>` : ""}</td>
        <td>${esc(when(a.starts_at))}</td><td class="acked">${a.acked_by ? esc(a.acked_by + " " + when(a.acked_at)) : ""}</td>
        <td>${a.acked_by || a.state !== "firing" ? "" : `<button class="small" data-ack="${esc(a.id)}">Ack</button>`}
          <button class="small plain" data-silence="${esc(a.id)}">Silence</button></td></tr>`).join("") + "</table>"
      : `<span class="muted">No alert matches.</span>`;
    const byID = new Map(alerts.map((a) => [a.id, a]));
    $$("[data-ack]", el).forEach((b) => (b.onclick = async () => {
      try {
        const a = await write("POST", `/api/v1/alerts/${encodeURIComponent(b.dataset.ack)}/ack`, {});
        b.closest("tr").querySelector(".acked").textContent = a.acked_by + " " + when(a.acked_at);
        b.remove();
        msg(`<span class="ok">acknowledged ${esc(a.summary)}</span>`);
      } catch (err) {
        msg(`<span class="err">${esc(err.message)}</span>`);
      }
    }));
    $$("[data-silence]", el).forEach((b) => (b.onclick = async () => {
      const a = byID.get(b.dataset.silence);
      const hours = parseInt(form.silenceFor.value, 10);
      try {
        await write("POST", "/api/v1/silences", { matchers: matchersOf(a), ends_at: new Date(Date.now() + hours * 3600e3).toISOString(), comment: "from the alert board: " + a.summary });
        navigate(location.search);
      } catch (err) {
        msg(`<span class="err">${esc(err.message)}</span>`);
      }
    }));
    silenceList($("#silence-list", el), silences, msg);
  } catch (err) {
    fail($("#alert-list", el), err);
  }
}

// matchersOf silences what makes an alert the one it is: its signature (an exception), or its
// rule on its service (a metric threshold).
function matchersOf(a) {
  if (a.signature) return [{ name: "signature", value: a.signature }];
  const m = [];
  if (a.rule) m.push({ name: "alertname", value: a.rule });
  if (a.service) m.push({ name: "service", value: a.service });
  return m.length ? m : [{ name: "kind", value: a.kind }];
}

function silenceList(el, silences, msg) {
  const now = Date.now();
  const active = silences.filter((s) => new Date(s.ends_at) > now);
  el.innerHTML = active.length ? `<table><tr><th>matchers</th><th>from</th><th>until</th><th>by</th><th>comment</th><th></th></tr>` +
    active.map((s) => `<tr><td>${esc(s.matchers.map((m) => m.name + (m.negative ? "!" : "") + (m.regex ? "=~" : "=") + m.value).join(", "))}</td>
      <td>${esc(when(s.starts_at))}</td><td>${esc(when(s.ends_at))}</td><td>${esc(s.created_by)}</td><td>${esc(s.comment)}</td>
      <td><button class="small plain" data-expire="${esc(s.id)}">Expire</button></td></tr>`).join("") + "</table>"
    : `<span class="muted">No active silence.</span>`;
  $$("[data-expire]", el).forEach((b) => (b.onclick = async () => {
    try {
      await write("DELETE", "/api/v1/silences/" + encodeURIComponent(b.dataset.expire));
      b.closest("tr").remove();
    } catch (err) {
      msg(`<span class="err">${esc(err.message)}</span>`);
    }
  }));
}

export async function alertPage(el, q) {
  let a;
  try {
    a = await api("/api/v1/alerts/" + encodeURIComponent(q.get("id") || ""));
  } catch (err) {
    return fail(el, err);
  }
  const facts = [["state", a.state], ["level", a.level], ["kind", a.kind], ["rule", a.rule], ["strategy", a.strategy], ["signature", a.signature],
    ["domain / service", [a.domain, a.service, a.operation].filter(Boolean).join(" / ")], ["value", a.kind === "metric" ? `${a.value} (threshold ${a.threshold})` : ""],
    ["count", a.count + (a.suppressed ? ` (${a.suppressed} folded in)` : "")], ["hosts", (a.hosts || []).join(", ")],
    ["since", when(a.starts_at)], ["resolved", when(a.resolved_at)], ["acknowledged", a.acked_by ? a.acked_by + " " + when(a.acked_at) : ""]];
  el.innerHTML = `<h2>${esc(a.summary)}</h2><div class="msg"><a href="${link({ page: "alerts" })}">all alerts</a>
      ${a.signature ? ` · <a href="${link({ page: "events", signature: a.signature })}">every event of this signature</a>` : ""}
      ${a.service ? ` · <a href="${link({ page: "service", service: a.service })}">${esc(a.service)}'s charts</a>` : ""}</div>
    <div class="grid2"><div class="card"><dl class="kv">${facts.filter(([, v]) => v).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}</dl></div>
      <div class="card"><h3>Sample traces</h3>${(a.trace_ids || []).map((id) => `<div><a class="trace-link" href="${link({ trace: id })}">${esc(id)}</a></div>`).join("") || `<span class="muted">none</span>`}</div></div>
    <h3>History</h3><table><tr><th>at</th><th>what</th><th>by</th><th>note</th></tr>${(a.history || []).map((h) => `<tr><td>${esc(when(h.at))}</td><td>${esc(h.what)}</td><td>${esc(h.by)}</td><td>${esc(h.note)}</td></tr>`).join("")}</table>
    <h3>Events</h3><div id="alert-events">${(a.events || []).length ? "loading…" : `<span class="muted">none</span>`}</div>`;
  if ((a.events || []).length) {
    const evs = await Promise.all(a.events.slice(0, 20).map((id) => api("/api/v1/events/" + encodeURIComponent(id)).catch(() => null)));
    eventList($("#alert-events", el), evs.filter(Boolean));
  }
}

export async function eventsPage(el, q) {
  const f = { service: q.get("service") || "", type: q.get("type") || "", signature: q.get("signature") || "" };
  el.innerHTML = `<h2>Events</h2><form class="bar"><label>service<input name="service" value="${esc(f.service)}"></label>
    <label>type<input name="type" placeholder="exception" value="${esc(f.type)}"></label>
    <label>signature<input name="signature" size="40" value="${esc(f.signature)}"></label><button>Search</button></form><div id="event-list">loading…</div>`;
  const form = $("form", el);
  form.onsubmit = (e) => {
    e.preventDefault();
    navigate(link({ page: "events", service: form.service.value, type: form.type.value, signature: form.signature.value }));
  };
  try {
    const { events } = await api("/api/v1/events?" + new URLSearchParams(Object.entries(f).filter(([, v]) => v)) + "&limit=100");
    eventList($("#event-list", el), events || []);
  } catch (err) {
    fail($("#event-list", el), err);
  }
}

function eventList(el, events) {
  el.innerHTML = events.length ? events.map((e) => `<div class="card"><b>${esc(e.type)}</b> ${esc(e.name)}: ${esc(e.message)}
      <div class="muted">${esc(when(e.time))} · ${esc(e.service)}${e.operation ? " " + esc(e.operation) : ""} on ${esc(e.host)}
      ${e.trace_id ? ` · <a href="${link({ trace: e.trace_id })}">trace ${esc(e.trace_id)}</a>` : ""}</div>
      ${e.stack ? `<pre class="stack">${esc(e.stack)}</pre>` : ""}</div>`).join("")
    : `<span class="muted">No event matches.</span>`;
}
