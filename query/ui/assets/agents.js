// Agents (versions per domain, live or gone, drops), domains, and the agent-config editor.
import { $, ago, api, esc, fail, link, navigate, options, when, write } from "./lib.js";

const counts = (m) => Object.entries(m || {}).map(([k, n]) => k + " × " + n).join(", ");

export async function agentsPage(el) {
  el.innerHTML = `<h2>Agents</h2><div id="agent-list">loading…</div>`;
  try {
    const v = await api("/api/v1/agents");
    $("#agent-list", el).innerHTML = "<h3>Live agents per domain and version</h3><table><tr><th>domain</th><th>versions</th></tr>" +
      Object.entries(v.versions || {}).map(([d, vs]) => `<tr><td>${esc(d)}</td><td>${esc(counts(vs))}</td></tr>`).join("") + "</table>" +
      "<h3>Agents</h3><table><tr><th>state</th><th>domain</th><th>service</th><th>host</th><th>pid</th><th>version</th><th>config</th><th>last seen</th><th>dropped</th></tr>" +
      (v.agents || []).map((a) => `<tr class="${a.live ? "" : "muted"}"><td>${a.live ? "<span class=\"ok\">live</span>" : "<span class=\"err\">gone</span>"}</td><td>${esc(a.domain)}</td>
        <td><a href="${link({ page: "service", service: a.service })}">${esc(a.service)}</a></td><td>${esc(a.host)}</td><td>${a.pid}</td><td>${esc(a.agent_version)}</td>
        <td><a href="${link({ page: "config", level: "service", name: a.service })}">${esc(a.config_version)}</a></td>
        <td title="${esc(when(a.last_seen))}">${esc(when(a.last_seen))} <span class="muted">(${esc(ago(a.last_seen))})</span></td>
        <td class="${a.dropped ? "err" : ""}">${a.dropped}</td></tr>`).join("") + "</table>";
  } catch (err) {
    fail($("#agent-list", el), err);
  }
}

export async function domainsPage(el) {
  el.innerHTML = `<h2>Domains</h2><div id="domain-list">loading…</div>`;
  try {
    const v = await api("/api/v1/domains");
    $("#domain-list", el).innerHTML = "<table><tr><th>status</th><th>domain</th><th>owner</th><th>first seen</th><th>live agents</th><th>gone</th><th>versions</th><th>dropped</th><th>config</th><th>alert strategy</th></tr>" +
      (v.domains || []).map((d) => `<tr><td class="${d.status === "normal" ? "" : "err"}">${esc(d.status)}</td><td>${esc(d.domain)}</td><td>${esc(d.owner)}</td>
        <td>${esc(when(d.first_seen))}</td><td>${d.live_agents}</td><td>${d.gone_agents}</td><td>${esc(counts(d.versions))}</td><td>${d.dropped}</td>
        <td><a href="${link({ page: "config", level: "domain", name: d.domain })}">${esc(d.config_version)}</a></td><td>${esc(d.alert_strategy || "none")}</td></tr>`).join("") + "</table>";
  } catch (err) {
    fail($("#domain-list", el), err);
  }
}

const switches = ["http", "sql", "custom", "cache", "rpc", "mq"];
const tri = (v) => (v === true ? "on" : v === false ? "off" : "");
const untri = (s) => (s === "on" ? true : s === "off" ? false : undefined);
const kinds = { default: "Default", groups: "group", domains: "domain", services: "service" };

// The editor: every stored level on the left, the chosen one's fields on the right. A field
// left at "inherit" is absent from the level, so the less specific level decides.
export async function configPage(el, q) {
  const level = q.get("level") || "default";
  const name = level === "default" ? "" : q.get("name") || "";
  el.innerHTML = `<h2>Agent configuration</h2><div class="msg" id="msg"></div><div class="grid2"><div id="levels">loading…</div><div id="editor"></div></div>`;
  const msg = (html) => ($("#msg", el).innerHTML = html);
  let levels;
  try {
    levels = await api("/api/v1/agent-config/levels");
  } catch (err) {
    return fail($("#levels", el), err);
  }
  const row = (kind, n, c) => `<tr><td><a href="${link({ page: "config", level: kind, name: n })}">${esc(n || "default")}</a></td>
    <td>${esc(c.sample_rate ?? "")}</td><td>${esc(Object.entries(c.switches || {}).filter(([, on]) => !on).map(([k]) => k).join(", "))}</td>
    <td>${c.kill ? "<span class=\"err\">kill</span>" : ""}</td><td>${esc(c.group || "")}</td><td class="muted">${esc(c.version)}</td></tr>`;
  const section = (key, kind) => `<tr><th colspan="6">${kinds[key]}s</th></tr>` + Object.entries(levels[key] || {}).map(([n, c]) => row(kind, n, c)).join("");
  $("#levels", el).innerHTML = `<table id="level-table"><tr><th>level</th><th>sample rate</th><th>switched off</th><th>kill</th><th>group</th><th>version</th></tr>
    ${levels.default ? row("default", "", levels.default) : `<tr><td><a href="${link({ page: "config" })}">default</a></td><td colspan="5" class="muted">not set</td></tr>`}
    ${section("groups", "group")}${section("domains", "domain")}${section("services", "service")}</table>
    <form class="bar" id="new-level" style="margin-top:10px"><label>new level<select name="level">${options(["service", "domain", "group"], "service")}</select></label>
      <label>name<input name="name" required></label><button class="plain">Edit</button></form>`;
  $("#new-level", el).onsubmit = (e) => {
    e.preventDefault();
    navigate(link({ page: "config", level: e.target.level.value, name: e.target.name.value.trim() }));
  };
  if (level !== "default" && !name) return;
  const stored = (level === "default" ? levels.default : levels[level + "s"]?.[name]) || {};
  const trisel = (n, v) => `<select name="${n}">${options(["", "on", "off"], tri(v), { "": "inherit" })}</select>`;
  const ed = $("#editor", el);
  ed.innerHTML = `<div class="card"><h3>${level === "default" ? "Default (every service without its own)" : esc(level + " " + name)}
      ${stored.version ? `<span class="muted">version ${esc(stored.version)}</span>` : `<span class="muted">(new)</span>`}</h3>
    <form id="config-form">
      <dl class="kv">
        <dt>sample rate</dt><dd><input name="sample_rate" type="number" min="0" max="1" step="any" placeholder="inherit" value="${esc(stored.sample_rate ?? "")}"></dd>
        ${switches.map((s) => `<dt>switch ${s}</dt><dd>${trisel("switch_" + s, stored.switches?.[s])}</dd>`).join("")}
        <dt>kill switch</dt><dd>${trisel("kill", stored.kill)} <span class="muted">on: the agents record nothing</span></dd>
        <dt>override domain sampling</dt><dd>${trisel("override_domain_sampling", stored.override_domain_sampling)} <span class="muted">on: re-decide sampling for traces entering from another domain (chains may break)</span></dd>
        ${level === "group" ? "" : `<dt>group</dt><dd><select name="group">${options(["", ...Object.keys(levels.groups || {})], stored.group || "", { "": "none" })}</select></dd>`}
      </dl>
      <div class="actions" style="margin-top:10px"><button>Save</button></div></form></div>
    ${level === "service" ? `<div class="card"><h3>What ${esc(name)}'s agents get</h3><pre id="effective">loading…</pre></div>` : ""}`;
  const effective = () => level === "service" && api("/api/v1/agent-config?service=" + encodeURIComponent(name))
    .then((c) => ($("#effective", ed).textContent = JSON.stringify(c, null, 2)), (err) => ($("#effective", ed).textContent = err.message));
  effective();
  const form = $("#config-form", ed);
  form.onsubmit = async (e) => {
    e.preventDefault();
    const body = {};
    if (form.sample_rate.value !== "") body.sample_rate = Number(form.sample_rate.value);
    for (const s of switches) {
      const v = untri(form["switch_" + s].value);
      if (v !== undefined) (body.switches ??= {})[s] = v;
    }
    for (const f of ["kill", "override_domain_sampling"]) {
      const v = untri(form[f].value);
      if (v !== undefined) body[f] = v;
    }
    if (form.group?.value) body.group = form.group.value;
    const target = level === "default" ? "service=*" : `${level}=${encodeURIComponent(name)}`;
    try {
      const saved = await write("PUT", "/api/v1/agent-config?" + target, body);
      await configPage(el, q); // the levels table shows the new version too
      msg(`<span class="ok" id="saved">saved ${esc(level + " " + name)}: version ${esc(saved.version)}</span>`);
    } catch (err) {
      msg(`<span class="err">${esc(err.message)}</span>`);
    }
  };
}
