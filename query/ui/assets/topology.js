// The call topology: a Cytoscape.js graph of services (and virtual nodes: databases, caches
// nobody instruments) with each edge's figures, over a range or for one trace.
import { $, api, colour, esc, fail, link, navigate, options, ranges, timeWindow } from "./lib.js";

const pct = (r) => (r * 100).toFixed(r && r < 0.01 ? 2 : 1) + " %";
export const figures = (x) => `${x.qps.toFixed(2)}/s · err ${pct(x.error_rate)} · p99 ${x.p99_ms == null ? "–" : x.p99_ms.toFixed(1) + " ms"}`;

// graph draws nodes {id, virtual, label} and edges {source, target, label} into el; clicking
// a service opens its page.
export function graph(el, nodes, edges) {
  el.dataset.nodes = nodes.map((n) => n.id).join(",");
  const cy = cytoscape({
    container: el,
    elements: [
      ...nodes.map((n) => ({ data: { id: n.id, label: n.label || n.id, colour: n.virtual ? "#8a90a3" : colour(n.id) }, classes: n.virtual ? "virtual" : "" })),
      ...edges.map((e, i) => ({ data: { id: "e" + i, source: e.source, target: e.target, label: e.label || "" } })),
    ],
    style: [
      { selector: "node", style: { "background-color": "data(colour)", label: "data(label)", "text-wrap": "wrap", "font-size": 11, "text-valign": "bottom", "text-margin-y": 4, width: 34, height: 34 } },
      { selector: "node.virtual", style: { shape: "round-rectangle", "border-style": "dashed", "border-width": 2, "border-color": "#555" } },
      { selector: "edge", style: { width: 2, "line-color": "#9aa5c8", "target-arrow-color": "#9aa5c8", "target-arrow-shape": "triangle", "curve-style": "bezier", label: "data(label)", "font-size": 10, "text-background-color": "#fff", "text-background-opacity": 0.85, "text-wrap": "wrap" } },
    ],
    layout: { name: "breadthfirst", directed: true, spacingFactor: 1.3, padding: 30 },
    wheelSensitivity: 0.3,
  });
  cy.on("tap", "node", (ev) => {
    if (!ev.target.hasClass("virtual")) navigate(link({ page: "service", service: ev.target.id() }));
  });
  return cy;
}

export async function topologyPage(el, q) {
  const w = timeWindow(q, "15m");
  el.innerHTML = `<h2>Topology</h2>
    <form class="bar"><label>range<select name="range">${options(ranges, w.range)}</select></label><button>Show</button></form>
    <div class="graph" id="topology-graph"></div><div id="topology-table"></div>`;
  $("form", el).onsubmit = (e) => {
    e.preventDefault();
    navigate(link({ page: "topology", range: e.target.range.value }));
  };
  try {
    const t = await api(`/api/v1/topology?start=${w.start}&end=${w.end}`);
    if (!t.nodes.length) {
      $("#topology-graph", el).outerHTML = `<div class="msg muted">No calls between ${esc(new Date(w.start).toLocaleString())} and now.</div>`;
      return;
    }
    graph($("#topology-graph", el),
      t.nodes.map((n) => ({ id: n.id, virtual: n.virtual, label: n.id + "\n" + figures(n) })),
      t.edges.map((e) => ({ source: e.source, target: e.target, label: figures(e) })));
    $("#topology-table", el).innerHTML = `<table><tr><th>caller</th><th>callee</th><th>qps</th><th>error rate</th><th>p99</th></tr>` +
      t.edges.map((e) => `<tr><td><a href="${link({ page: "service", service: e.source })}">${esc(e.source)}</a></td><td>${esc(e.target)}</td>
        <td>${e.qps.toFixed(2)}</td><td>${pct(e.error_rate)}</td><td>${e.p99_ms == null ? "–" : e.p99_ms.toFixed(1) + " ms"}</td></tr>`).join("") + "</table>";
  } catch (err) {
    fail($("#topology-graph", el), err);
  }
}
