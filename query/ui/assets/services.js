// Services and a service's page: qps, error rate and p50/p90/p99 latency over a range (uPlot).
import { $, api, colour, esc, fail, link, navigate, options, ranges, timeWindow } from "./lib.js";

export async function servicesPage(el) {
  el.innerHTML = `<h2>Services</h2><div id="service-list">loading…</div>`;
  try {
    const s = await api("/api/v1/services");
    $("#service-list", el).innerHTML = (s.services ||= []).length
      ? `<table><tr><th>domain</th><th>service</th><th>operations</th></tr>` + s.services.map((x) => `<tr><td>${esc(x.domain)}</td>
          <td><a href="${link({ page: "service", service: x.name })}">${esc(x.name)}</a></td>
          <td>${x.operations.map((o) => `<a href="${link({ page: "service", service: x.name, operation: o })}">${esc(o)}</a>`).join("<br>")}</td></tr>`).join("") + "</table>"
      : `<span class="muted">No service has reported metrics in the last 24 h.</span>`;
  } catch (err) {
    fail($("#service-list", el), err);
  }
}

// The charts: each a title, the metrics it overlays, and how a value reads.
const charts = [
  { id: "qps", title: "Requests per second", metrics: ["qps"], fmt: (v) => v.toFixed(2) },
  { id: "error_rate", title: "Error rate", metrics: ["error_rate"], fmt: (v) => (v * 100).toFixed(1) + " %" },
  { id: "latency", title: "Latency (ms)", metrics: ["p50", "p90", "p99"], fmt: (v) => v.toFixed(1) },
];
const strokes = { qps: "#3450d8", error_rate: "#c0262d", p50: "#1b7f3b", p90: "#b3541e", p99: "#7b3fb5" };

export async function servicePage(el, q) {
  const service = q.get("service") || "";
  const operation = q.get("operation") || "";
  const w = timeWindow(q, "1h");
  el.innerHTML = `<h2>Service ${esc(service)}${operation ? " · " + esc(operation) : ""}</h2>
    <form class="bar"><label>service<select name="service"></select></label><label>operation<select name="operation"></select></label>
      <label>range<select name="range">${options(ranges, w.range)}</select></label>
      <label>step<select name="step">${options(["", "1m", "5m", "1h"], q.get("step") || "", { "": "auto (" + w.step + ")" })}</select></label><button>Show</button>
      <a href="${link({ service, operation, lookback: w.range })}">traces</a> <a href="${link({ service, operation, errors: "true", lookback: w.range })}">failed traces</a>
      <a href="${link({ page: "alerts", service })}">alerts</a></form>
    ${charts.map((c) => `<div class="chart" id="chart-${c.id}" data-metric="${c.id}"><h3>${c.title}</h3></div>`).join("")}`;
  const form = $("form", el);
  form.onsubmit = (e) => {
    e.preventDefault();
    navigate(link({ page: "service", service: form.service.value, operation: form.operation.value, range: form.range.value, step: form.step.value }));
  };
  api("/api/v1/services").then((s) => {
    const names = s.services.map((x) => x.name);
    if (service && !names.includes(service)) names.unshift(service);
    form.service.innerHTML = options(names, service);
    const ops = ["", ...(s.services.find((x) => x.name === service)?.operations || [])];
    form.operation.innerHTML = options(ops, operation, { "": "all" });
    form.service.onchange = () => navigate(link({ page: "service", service: form.service.value, range: w.range }));
  }, () => {});
  if (!service) return;
  const base = `/api/v1/metrics?service=${encodeURIComponent(service)}${operation ? "&operation=" + encodeURIComponent(operation) : ""}&start=${w.start}&end=${w.end}&step=${w.step}`;
  await Promise.all(charts.map(async (c) => {
    const box = $("#chart-" + c.id, el);
    try {
      const series = await Promise.all(c.metrics.map((m) => api(base + "&metric=" + m)));
      draw(box, c, series);
    } catch (err) {
      box.insertAdjacentHTML("beforeend", `<div class="err">${esc(err.message)}</div>`);
    }
  }));
}

function draw(box, c, series) {
  const xs = series[0].points.map((p) => new Date(p.t).getTime() / 1000);
  const ys = series.map((s) => s.points.map((p) => p.v));
  box.dataset.points = ys.flat().filter((v) => v != null).length;
  // qps is 0, not null, in a minute without spans: nonzero tells a chart with traffic apart.
  box.dataset.nonzero = ys.flat().filter((v) => v != null && v !== 0).length;
  const plot = new uPlot({
    width: Math.max(box.clientWidth - 16, 300),
    height: 200,
    scales: { x: { time: true } },
    series: [{}, ...series.map((s) => ({ label: s.metric, stroke: strokes[s.metric] || colour(s.metric), width: 2, spanGaps: false, value: (u, v) => (v == null ? "–" : c.fmt(v)) }))],
    axes: [{}, { values: (u, vals) => vals.map((v) => c.fmt(v)), size: 70 }],
  }, [xs, ...ys], box);
  if (box.dataset.points === "0") box.insertAdjacentHTML("beforeend", `<div class="muted">no spans in this range</div>`);
  return plot;
}
