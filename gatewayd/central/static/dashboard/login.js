// The sign-in form: POST the name and password; the answer sets the session cookie.
"use strict";

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const message = document.getElementById("message");
  message.textContent = "";
  const resp = await fetch("/v1/dashboard/login", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: form.elements.namedItem("name").value, password: form.elements.namedItem("password").value }),
  });
  if (resp.ok) { location.href = "/dashboard/"; return; }
  const data = await resp.json().catch(() => ({}));
  message.textContent = data.error ? data.error.message : "sign-in failed";
  form.elements.namedItem("password").value = "";
});
