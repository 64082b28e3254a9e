// Shared by the portal pages: the session's CSRF token, JSON calls, safe DOM building.
// Nothing is kept in localStorage or sessionStorage: codes and data live only in the page.
"use strict";

const Portal = {
  csrf: null,

  toLogin() { location.href = "/portal/login"; },

  async session() {
    const data = await Portal.get("/portal/api/session");
    Portal.csrf = data.csrf_token;
    const who = document.getElementById("who");
    if (who) who.textContent = data.name;
    Portal.bindLogout();
    return data;
  },

  async call(method, path, body) {
    const headers = { "X-CSRF-Token": Portal.csrf || "" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, {
      method, credentials: "same-origin", cache: "no-store", headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (resp.status === 401 && !path.endsWith("/login") && !path.endsWith("/password")) {
      Portal.toLogin();
      throw new Error("signed out");
    }
    const data = resp.status === 204 ? null : await resp.json();
    if (!resp.ok) {
      const error = new Error(data && data.error ? data.error.message : resp.statusText);
      error.code = data && data.error ? data.error.code : "http_" + resp.status;
      error.status = resp.status;
      error.details = data && data.error ? data.error.details : null;
      throw error;
    }
    return data;
  },

  get(path) { return Portal.call("GET", path); },
  send(method, path, body) { return Portal.call(method, path, body); },

  // Elements are built with textContent only: nothing from the server is parsed as HTML.
  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  },

  // Integer fen as yuan without floating point: 12345 -> "123.45".
  yuan(fen) {
    const sign = fen < 0 ? "-" : "";
    const abs = Math.abs(fen);
    return sign + Math.floor(abs / 100) + "." + String(abs % 100).padStart(2, "0");
  },

  when(iso) {
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  },

  show(id, text, ok) {
    const node = document.getElementById(id);
    node.textContent = text || "";
    node.className = ok ? "message ok" : "message error";
  },

  bindLogout() {
    const button = document.getElementById("logout");
    if (!button || button.dataset.bound) return;
    button.dataset.bound = "1";
    button.addEventListener("click", async () => {
      try { await Portal.send("POST", "/portal/api/logout"); } finally { Portal.toLogin(); }
    });
  },
};
