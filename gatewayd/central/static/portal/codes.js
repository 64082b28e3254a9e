// Codes page: the fixed member code, and a consumption code fetched fresh every minute
// (and on demand) with a countdown. Codes are never written to any storage.
"use strict";

const REFRESH_MS = 60_000;
let deadline = 0;

function showCountdown() {
  const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
  const text = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
  document.getElementById("countdown").textContent = text;
}

async function freshCode() {
  const button = document.getElementById("refresh-code");
  button.disabled = true;
  try {
    const issued = await Portal.send("POST", "/portal/api/consumption-code");
    document.getElementById("code-qr").src = issued.qr;
    document.getElementById("code").textContent = issued.code.replace(/(\d{4})(?=\d)/g, "$1 ");
    document.getElementById("code").dataset.code = issued.code;
    deadline = Date.now() + issued.expires_in_seconds * 1000;
    showCountdown();
    Portal.show("message", "", true);
  } catch (error) {
    Portal.show("message", error.status === 429
      ? "刷新太频繁，请稍候 · Too many new codes, wait a moment" : error.message, false);
  } finally {
    button.disabled = false;
  }
}

async function load() {
  await Portal.session();
  const member = await Portal.get("/portal/api/member-code");
  document.getElementById("member-qr").src = member.qr;
  document.getElementById("member-code").textContent = member.member_code;
  document.getElementById("card-number").textContent = member.card_number;
  await freshCode();
  setInterval(freshCode, REFRESH_MS);
  setInterval(showCountdown, 1000);
  document.getElementById("refresh-code").addEventListener("click", freshCode);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") freshCode();
  });
}

load().catch((error) => Portal.show("message", error.message, false));
