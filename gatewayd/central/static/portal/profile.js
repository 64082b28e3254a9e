// Profile page: safe fields, password (needs the current one), phone (needs an SMS code).
"use strict";

const FIELDS = ["name", "gender", "birthday", "address", "email"];

function fill(me) {
  for (const field of FIELDS) document.getElementById(field).value = me[field] || "";
  document.getElementById("phone-now").textContent = me.phone || "–";
  document.getElementById("who").textContent = me.name;
}

document.getElementById("profile").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {};
  for (const field of FIELDS) {
    const value = document.getElementById(field).value.trim();
    body[field] = value === "" && field !== "name" ? null : value;
  }
  try {
    fill(await Portal.send("PATCH", "/portal/api/profile", body));
    Portal.show("profile-message", "已保存 · Saved", true);
  } catch (error) {
    Portal.show("profile-message", error.message, false);
  }
});

document.getElementById("password-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const current = document.getElementById("current-password").value;
  const fresh = document.getElementById("new-password").value;
  if (fresh !== document.getElementById("new-password-again").value) {
    Portal.show("password-message", "两次输入不一致 · The new passwords differ", false);
    return;
  }
  try {
    const session = await Portal.send("POST", "/portal/api/password",
      { current_password: current, new_password: fresh });
    Portal.csrf = session.csrf_token;  // the old session ended; this is the new one
    event.target.reset();
    Portal.show("password-message", "密码已修改 · Password changed", true);
  } catch (error) {
    const text = error.code === "wrong_password"
      ? "当前密码错误 · The current password is wrong" : error.message;
    Portal.show("password-message", text, false);
  }
});

document.getElementById("send-code").addEventListener("click", async () => {
  const phone = document.getElementById("new-phone").value.trim();
  try {
    const sent = await Portal.send("POST", "/portal/api/phone/code", { phone });
    Portal.show("phone-message",
      `验证码已发送至 ${sent.phone_masked} · Code sent to ${sent.phone_masked}`, true);
  } catch (error) {
    Portal.show("phone-message", error.message, false);
  }
});

document.getElementById("phone-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const phone = document.getElementById("new-phone").value.trim();
  const code = document.getElementById("sms-code").value.trim();
  try {
    fill(await Portal.send("POST", "/portal/api/phone", { phone, code }));
    event.target.reset();
    Portal.show("phone-message", "手机号已更换 · Phone changed", true);
  } catch (error) {
    const left = error.details && error.details.attempts_left;
    Portal.show("phone-message", error.message + (left !== undefined && left !== null ? ` (${left})` : ""), false);
  }
});

Portal.session()
  .then(() => Portal.get("/portal/api/me"))
  .then(fill)
  .catch((error) => Portal.show("profile-message", error.message, false));
