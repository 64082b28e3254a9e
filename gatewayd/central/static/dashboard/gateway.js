// One gateway: facts, devices, recent errors, counters, heartbeat history and its alerts.
"use strict";

const { el } = Dash;
const gatewayId = new URLSearchParams(location.search).get("id") || "";

function fill(id, rows, empty) {
  const body = document.querySelector("#" + id + " tbody");
  const cols = document.querySelectorAll("#" + id + " th").length;
  body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: cols, class: "muted" }, empty))]));
}

function render(g) {
  document.title = g.id + " · gatewayd HQ";
  document.getElementById("title").replaceChildren(g.name + " (" + g.id + ") · " + g.store_name + " ", Dash.badge(g.state));
  const facts = [["State", Dash.badge(g.state)], ["Last heartbeat", Dash.ago(g.last_seen_at)],
    ["Version", g.version || "–"], ["Uptime", Dash.duration(g.uptime_s)],
    ["Event rate", Dash.rate(g.event_rate)], ["Events (total)", g.events_total],
    ["Last identification", Dash.ago(g.last_identification_at)], ["Outbox backlog", g.backlog],
    ["Outbox dropped", g.dropped]];
  document.getElementById("facts").replaceChildren(...facts.map(([k, v]) => el("div", {}, el("span", { class: "label" }, k), v)));
  fill("devices", g.devices.map((d) => el("tr", { "data-device": d.id },
    el("td", {}, d.id), el("td", {}, Dash.badge(d.state)), el("td", { title: d.since || "" }, Dash.ago(d.since)))), "no devices reported");
  fill("errors", g.recent_errors.slice().reverse().map((e) => el("tr", {},
    el("td", {}, e.timestamp || e.ts || ""), el("td", {}, e.level || ""), el("td", {}, e.event || ""),
    el("td", {}, e.device || ""), el("td", {}, e.message || e.error || e.reason || ""))), "no recent errors");
  fill("counters", Object.entries(g.counters).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v))), "no events yet");
  fill("history", g.history.slice().reverse().map((h) => el("tr", {},
    el("td", {}, h.at), el("td", {}, Dash.rate(h.rate)), el("td", {}, h.backlog), el("td", {}, h.bad))), "no heartbeats yet");
  fill("incidents", g.incidents.map((i) => el("tr", {},
    el("td", {}, i.rule_name || i.rule), el("td", {}, i.subject), el("td", {}, i.detail),
    el("td", {}, i.fired_at), el("td", {}, i.resolved_at || "open"))), "no alerts");
}

async function load() {
  const data = await Dash.get("/v1/dashboard/gateways/" + encodeURIComponent(gatewayId));
  Dash.syncClock(data.generated_at);
  render(data);
}

function live() {
  const status = document.getElementById("live");
  const source = new EventSource("/v1/dashboard/stream?gateway=" + encodeURIComponent(gatewayId));
  source.addEventListener("open", () => { status.className = "live on"; status.textContent = "live"; });
  source.addEventListener("error", () => { status.className = "live"; status.textContent = "reconnecting…"; });
  source.addEventListener("changes", (event) => {
    const data = JSON.parse(event.data);
    Dash.syncClock(data.at);
    if (data.changed.length) load();
    status.textContent = "live · " + new Date(Date.parse(data.at)).toLocaleTimeString();
  });
}

Dash.bindLogout();
Dash.session().then(load).then(live).catch((err) => {
  document.getElementById("title").textContent = String(err.message || err);
});
