// Sign-in: one generic message for a wrong account or password (the server says no more).
"use strict";

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.target.querySelector("button");
  button.disabled = true;
  const account = document.getElementById("account").value.trim();
  const password = document.getElementById("password").value;
  try {
    await Portal.send("POST", "/portal/api/login", { account, password });
    location.href = "/portal/";
  } catch (error) {
    const texts = {
      bad_login: "卡号/手机号或密码错误 · Wrong card number, phone or password",
      login_throttled: "尝试次数过多，请稍后再试 · Too many attempts, try again later",
      check_digit: "卡号校验位错误 · The card number is mistyped",
      invalid_account: "请输入卡号或手机号 · Enter a card number or mobile number",
    };
    Portal.show("message", texts[error.code] || error.message, false);
  } finally {
    button.disabled = false;
  }
});
