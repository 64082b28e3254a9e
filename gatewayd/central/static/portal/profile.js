// Profile page: safe fields, the chain's custom fields (those HQ lets members edit),
// password (needs the current one), phone (needs an SMS code).
"use strict";

const FIELDS = ["name", "gender", "birthday", "address", "email"];
// The custom values as loaded, by key: only the ones the member changed are sent.
let customLoaded = {};

function customText(field) {
  if (field.value === null || field.value === undefined) return "";
  return String(field.value);  // booleans become "true"/"false", as the select's values
}

function customControl(field) {
  const id = "custom-" + field.key;
  const attrs = { id, "data-key": field.key, "data-type": field.type };
  if (!field.editable) attrs.disabled = "disabled";
  let control;
  if (field.type === "choice" || field.type === "boolean") {
    const options = field.type === "boolean"
      ? [["true", "是 · Yes"], ["false", "否 · No"]]
      : field.choices.map((choice) => [choice, choice]);
    control = Portal.el("select", attrs,
      Portal.el("option", { value: "" }, "未填 · Not given"),
      options.map(([value, text]) => Portal.el("option", { value }, text)));
  } else {
    const types = { number: "number", date: "date", text: "text" };
    control = Portal.el("input", { ...attrs, type: types[field.type], maxlength: "500",
      step: field.type === "number" ? "any" : null });
  }
  control.value = customText(field);
  const note = field.editable ? null : Portal.el("small", {}, " 由门店填写 · set by the store");
  const star = field.required ? " *" : "";
  return [Portal.el("label", { for: id }, field.label + star, note), control];
}

function renderCustom(fields) {
  const box = document.getElementById("custom-fields");
  const legend = box.querySelector("legend");
  box.replaceChildren(legend, ...fields.flatMap(customControl));
  box.hidden = fields.length === 0;
  customLoaded = Object.fromEntries(fields.map((f) => [f.key, customText(f)]));
}

function customChanges() {
  const changes = {};
  for (const control of document.querySelectorAll("#custom-fields [data-key]")) {
    const key = control.dataset.key;
    if (control.disabled || control.value === customLoaded[key]) continue;
    const text = control.value.trim();
    let value = text === "" ? null : text;
    if (value !== null && control.dataset.type === "boolean") value = text === "true";
    if (value !== null && control.dataset.type === "number") {
      const number = Number(text);  // not a finite number: sent as typed, the server says why
      value = Number.isFinite(number) ? number : text;
    }
    changes[key] = value;
  }
  return changes;
}

function fill(me) {
  for (const field of FIELDS) document.getElementById(field).value = me[field] || "";
  document.getElementById("phone-now").textContent = me.phone || "–";
  document.getElementById("who").textContent = me.name;
  renderCustom(me.custom_fields || []);
}

document.getElementById("profile").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {};
  for (const field of FIELDS) {
    const value = document.getElementById(field).value.trim();
    body[field] = value === "" && field !== "name" ? null : value;
  }
  const custom = customChanges();
  if (Object.keys(custom).length > 0) body.custom = custom;
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
