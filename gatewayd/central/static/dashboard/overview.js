// The overview: counts per state, filters, one page of gateways grouped by store, live updates.
"use strict";

const { el } = Dash;
const params = new URLSearchParams(location.search);
let page = Number(params.get("page") || 1);
let shown = new Map(); // gateway id -> its row, for live patches
const TILES = [["online", "Online"], ["stale", "Stale"], ["offline", "Offline"],
  ["never_seen", "Never seen"], ["devices_bad", "Device problems"], ["total", "Gateways"]];

function renderTiles(counts, openAlerts) {
  const tiles = document.getElementById("tiles");
  tiles.replaceChildren(
    ...TILES.map(([key, label]) => el("div", {
      class: "tile " + key, id: "count-" + key,
      onclick: () => { if (key in { online: 1, stale: 1, offline: 1, never_seen: 1 }) filterBy(key); },
    }, el("b", {}, counts[key]), label)),
    el("a", { class: "tile alerts", href: "/dashboard/alerts", id: "count-alerts" }, el("b", {}, openAlerts), "Open alerts"),
  );
}

function filterBy(state) {
  const next = new URLSearchParams({ state });
  location.search = next.toString();
}

function gatewayRow(g) {
  const devices = g.devices.length
    ? g.devices.map((d) => el("span", { class: "dev" }, d.id + " ", Dash.badge(d.state)))
    : el("span", { class: "muted" }, "none reported");
  return el("tr", { "data-gateway": g.id, "data-state": g.state },
    el("td", {}, el("a", { href: "/dashboard/gateway?id=" + encodeURIComponent(g.id) }, g.id),
      el("div", { class: "muted" }, g.name)),
    el("td", { class: "state" }, Dash.badge(g.state)),
    el("td", { title: g.last_seen_at || "" }, Dash.ago(g.last_seen_at)),
    el("td", {}, g.version || "–"),
    el("td", {}, Dash.duration(g.uptime_s)),
    el("td", {}, devices),
    el("td", {}, Dash.rate(g.event_rate)),
    el("td", { title: g.last_identification_at || "" }, Dash.ago(g.last_identification_at)),
    el("td", { class: g.backlog > 0 ? "error" : "" }, g.backlog),
  );
}

function renderRows(items) {
  const body = document.querySelector("#gateways tbody");
  const rows = [];
  shown = new Map();
  let store = null;
  for (const g of items) {
    if (g.store !== store) {
      store = g.store;
      rows.push(el("tr", { class: "store" }, el("td", { colspan: 9 }, g.store_name + " (" + g.store + ")")));
    }
    const row = gatewayRow(g);
    shown.set(g.id, row);
    rows.push(row);
  }
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "no gateways match")));
  body.replaceChildren(...rows);
}

async function load() {
  const query = new URLSearchParams();
  for (const key of ["state", "store", "q", "problems"]) if (params.get(key)) query.set(key, params.get(key));
  query.set("page", page);
  const data = await Dash.get("/v1/dashboard/overview?" + query);
  Dash.syncClock(data.generated_at);
  renderTiles(data.counts, data.open_alerts);
  const storeSelect = document.getElementById("f-store");
  if (storeSelect.options.length === 1) {
    for (const s of data.stores) storeSelect.append(el("option", { value: s.id }, s.name));
  }
  document.getElementById("f-state").value = params.get("state") || "";
  storeSelect.value = params.get("store") || "";
  document.getElementById("f-q").value = params.get("q") || "";
  document.getElementById("f-problems").checked = params.get("problems") === "true";
  renderRows(data.items);
  const pages = Math.max(1, Math.ceil(data.matching / data.per_page));
  document.getElementById("pageinfo").textContent = `page ${data.page} of ${pages} · ${data.matching} gateways`;
  document.getElementById("prev").disabled = data.page <= 1;
  document.getElementById("next").disabled = data.page >= pages;
}

function live() {
  const status = document.getElementById("live");
  const source = new EventSource("/v1/dashboard/stream");
  let opened = false;
  source.addEventListener("open", () => {
    status.className = "live on";
    status.textContent = "live";
    if (opened) load(); // reconnected: catch up on what happened while the stream was down
    opened = true;
  });
  source.addEventListener("error", () => { status.className = "live"; status.textContent = "reconnecting…"; });
  source.addEventListener("changes", (event) => {
    const data = JSON.parse(event.data);
    Dash.syncClock(data.at);
    for (const [key] of TILES) {
      const tile = document.querySelector("#count-" + key + " b");
      if (tile) tile.textContent = data.counts[key];
    }
    for (const g of data.changed) {
      const old = shown.get(g.id);
      if (!old) continue;
      const row = gatewayRow(g);
      old.replaceWith(row);
      shown.set(g.id, row);
    }
    status.textContent = "live · " + new Date(Date.parse(data.at)).toLocaleTimeString();
  });
}

document.getElementById("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const next = new URLSearchParams();
  for (const [key, value] of form) if (value) next.set(key, value);
  location.search = next.toString();
});
document.getElementById("prev").addEventListener("click", () => { page -= 1; params.set("page", page); history.replaceState(null, "", "?" + params); load(); });
document.getElementById("next").addEventListener("click", () => { page += 1; params.set("page", page); history.replaceState(null, "", "?" + params); load(); });
Dash.bindLogout();
Dash.session().then(load).then(live).catch((err) => console.error(err));
