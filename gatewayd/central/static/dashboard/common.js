// Shared by the dashboard pages: the session's CSRF token, JSON calls, safe DOM building.
"use strict";

const Dash = {
  csrf: null,
  offset: 0, // server clock minus browser clock: "3 min ago" is counted in central's time

  syncClock(iso) { if (iso) Dash.offset = Date.parse(iso) - Date.now(); },

  async session() {
    const resp = await fetch("/v1/dashboard/session", { credentials: "same-origin" });
    if (resp.status === 401) { location.href = "/dashboard/login"; throw new Error("signed out"); }
    const data = await resp.json();
    Dash.csrf = data.csrf_token;
    const who = document.getElementById("who");
    if (who) who.textContent = data.user;
    return data;
  },

  async get(path) {
    const resp = await fetch(path, { credentials: "same-origin" });
    if (resp.status === 401) { location.href = "/dashboard/login"; throw new Error("signed out"); }
    const data = await resp.json();
    if (!resp.ok) throw new Error(data.error ? data.error.message : resp.statusText);
    return data;
  },

  async send(method, path, body) {
    const resp = await fetch(path, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": Dash.csrf || "" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = resp.status === 204 ? null : await resp.json();
    if (!resp.ok) throw new Error(data && data.error ? data.error.message : resp.statusText);
    return data;
  },

  // Elements are built with textContent only: nothing from the server is parsed as HTML.
  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  },

  badge(state) { return Dash.el("span", { class: "badge " + state, "data-state": state }, state.replace("_", " ")); },

  ago(iso) {
    if (!iso) return "never";
    const seconds = Math.max(0, (Date.now() + Dash.offset - Date.parse(iso)) / 1000);
    if (seconds < 90) return Math.round(seconds) + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " d ago";
  },

  duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    if (seconds < 172800) return Math.floor(seconds / 3600) + " h";
    return Math.floor(seconds / 86400) + " d";
  },

  rate(value) { return value === null || value === undefined ? "–" : value.toFixed(1) + "/min"; },

  bindLogout() {
    const button = document.getElementById("logout");
    if (!button) return;
    button.addEventListener("click", async () => {
      try { await Dash.send("POST", "/v1/dashboard/logout"); } finally { location.href = "/dashboard/login"; }
    });
  },
};
