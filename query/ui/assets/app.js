// The router: the URL names the page (?page=…, ?trace=ID, or a search's fields), so every
// page is a deep link; links inside the UI change the URL without reloading.
import { $, $$, navigate } from "./lib.js";
import { agentsPage, configPage, domainsPage } from "./agents.js";
import { alertPage, alertsPage, eventsPage } from "./alerts.js";
import { servicePage, servicesPage } from "./services.js";
import { topologyPage } from "./topology.js";
import { searchPage, tracePage } from "./traces.js";

const pages = {
  traces: searchPage, services: servicesPage, service: servicePage, topology: topologyPage,
  alerts: alertsPage, alert: alertPage, events: eventsPage, agents: agentsPage, domains: domainsPage, config: configPage,
};
// The nav entry each page belongs to.
const section = { service: "services", alert: "alerts", events: "alerts" };

function route() {
  const q = new URLSearchParams(location.search);
  const name = q.get("trace") ? "trace" : pages[q.get("page")] ? q.get("page") : "traces";
  const nav = section[name] || (name === "trace" ? "traces" : name);
  $$("header nav a").forEach((a) => a.classList.toggle("on", a.dataset.page === nav));
  const view = $("#view");
  view.dataset.page = name;
  // A fresh element per visit: a slow answer for the page left behind lands in a detached one.
  const el = document.createElement("div");
  view.replaceChildren(el);
  (name === "trace" ? tracePage : pages[name])(el, q);
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[href^='?']");
  if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", route);
route();
