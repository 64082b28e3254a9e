// The report page: read the form, fetch /v1/reports/{name} with the admin session, draw.
"use strict";

(() => {
  const form = document.getElementById("filters");
  const status = document.getElementById("status");

  function query() {
    const data = new FormData(form);
    const params = new URLSearchParams();
    for (const key of ["from", "to", "store"]) {
      const value = String(data.get(key) || "").trim();
      if (value) params.set(key, value);
    }
    return { name: String(data.get("report")), params };
  }

  function cell(value, numeric) {
    const td = document.createElement("td");
    if (numeric) td.className = "num";
    td.textContent = value === null || value === undefined ? "–" : String(value);
    return td;
  }

  function renderTable(table) {
    const wrap = document.createElement("div");
    const title = document.createElement("h3");
    title.textContent = table.title;
    const t = document.createElement("table");
    const head = t.createTHead().insertRow();
    const numeric = table.columns.map((_, i) => table.rows.length > 0 && table.rows.every((r) => typeof r[i] === "number"));
    table.columns.forEach((name, i) => {
      const th = document.createElement("th");
      th.textContent = name;
      if (numeric[i]) th.className = "num";
      head.append(th);
    });
    const body = t.createTBody();
    for (const row of table.rows) {
      const tr = body.insertRow();
      row.forEach((value, i) => tr.append(cell(value, numeric[i])));
    }
    if (!table.rows.length) {
      const tr = body.insertRow();
      const td = cell("no data");
      td.colSpan = table.columns.length;
      tr.append(td);
    }
    wrap.append(title, t);
    return wrap;
  }

  async function show(event) {
    if (event) event.preventDefault();
    const { name, params } = query();
    const base = `/v1/reports/${encodeURIComponent(name)}`;
    const qs = params.toString();
    document.getElementById("xlsx").href = `${base}?${qs}${qs ? "&" : ""}format=xlsx`;
    document.getElementById("json").href = `${base}?${qs}${qs ? "&" : ""}format=json`;
    status.textContent = "loading…";
    status.className = "muted";
    const resp = await fetch(`${base}${qs ? "?" + qs : ""}`, { credentials: "same-origin" });
    if (resp.status === 401) { location.href = "/dashboard/login"; return; }
    const report = await resp.json();
    if (!resp.ok) {
      status.textContent = report.error ? report.error.message : resp.statusText;
      status.className = "error";
      return;
    }
    status.textContent = `${report.start} – ${report.end}${report.store ? " · " + report.store : ""}`;
    const charts = document.getElementById("charts");
    const tables = document.getElementById("tables");
    charts.replaceChildren(...report.charts.map((spec) => Charts.draw(spec, report.tables[spec.table])));
    tables.replaceChildren(...report.tables.map(renderTable));
    document.body.dataset.loaded = name;
  }

  form.addEventListener("submit", show);
  const initial = new URLSearchParams(location.search);
  for (const key of ["report", "from", "to", "store"]) {
    if (initial.get(key)) form.elements[key].value = initial.get(key);
  }
  show().catch((err) => { status.textContent = String(err); status.className = "error"; });
})();
