// Alert rules (add, disable) and the firing/resolved history.
"use strict";

const { el } = Dash;

async function load() {
  const [rules, incidents, overview] = await Promise.all([
    Dash.get("/v1/alert-rules"), Dash.get("/v1/alert-incidents?limit=200"),
    Dash.get("/v1/dashboard/overview?per_page=1"),
  ]);
  const storeSelect = document.getElementById("rule-store");
  if (storeSelect.options.length === 1) {
    for (const s of overview.stores) storeSelect.append(el("option", { value: s.id }, s.name));
  }
  const unit = { gateway_offline: "min", device_failed: "min", backlog_over: "items" };
  const ruleRows = rules.items.map((r) => el("tr", { "data-rule": r.id },
    el("td", {}, r.name), el("td", {}, r.kind), el("td", {}, r.threshold + " " + unit[r.kind]),
    el("td", {}, r.store || "whole chain"),
    el("td", {}, r.recipients.map((x) => x.channel + ": " + x.address).join(", ")),
    el("td", {}, r.enabled ? "enabled" : "disabled"),
    el("td", {}, r.enabled ? el("button", { type: "button", onclick: () => disable(r.id) }, "Disable") : ""),
  ));
  document.querySelector("#rules tbody").replaceChildren(...ruleRows);
  const incidentRows = incidents.items.map((i) => el("tr", { "data-incident": i.id, class: i.resolved_at ? "" : "error" },
    el("td", {}, i.rule_name || i.rule), el("td", {}, i.subject), el("td", {}, i.detail),
    el("td", {}, i.fired_at), el("td", {}, i.resolved_at || "open"),
    el("td", { title: i.delivery_error || "" }, i.notified + (i.delivery_error ? " (" + i.delivery_error + ")" : "")),
  ));
  document.querySelector("#incidents tbody").replaceChildren(...incidentRows);
}

async function disable(id) { await Dash.send("DELETE", "/v1/alert-rules/" + id); await load(); }

document.getElementById("new-rule").addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = event.target;
  const error = document.getElementById("rule-error");
  error.textContent = "";
  try {
    await Dash.send("POST", "/v1/alert-rules", {
      name: f.elements.namedItem("name").value, kind: f.kind.value, threshold: Number(f.threshold.value),
      store: f.store.value || null, recipients: [{ channel: f.channel.value, address: f.address.value }],
    });
    f.reset();
    await load();
  } catch (err) { error.textContent = err.message; }
});

function live() {
  const status = document.getElementById("live");
  const source = new EventSource("/v1/dashboard/stream");
  source.addEventListener("open", () => { status.className = "live on"; status.textContent = "live"; });
  source.addEventListener("error", () => { status.className = "live"; status.textContent = "reconnecting…"; });
}

Dash.bindLogout();
Dash.session().then(load).then(live).catch((err) => console.error(err));
