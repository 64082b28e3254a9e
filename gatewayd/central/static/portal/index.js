// Account page: points, stored value, level, the latest ledger entries and orders.
"use strict";

const ACCOUNTS = {
  points: "积分 Points", stored_value: "余额 Balance", earned: "累计积分 Earned",
  count_card: "次卡 Count card", time_card: "时长卡 Time card",
};
const KINDS = {
  opening: "开户 Opening", adjustment: "调整 Adjustment", debit: "消费 Spent",
  earn: "获得 Earned", earn_reversal: "退回 Earn reversed", redeem: "抵扣 Redeemed",
  refund: "退款 Refund", recharge: "充值 Recharge", recharge_bonus: "赠送 Bonus",
  recharge_bonus_paid: "赠送 Bonus", use: "使用 Used", purchase: "购买 Bought",
  expiry: "过期 Expired",
};
const METHODS = {
  cash: "现金 Cash", wechat: "微信 WeChat", alipay: "支付宝 Alipay",
  stored_value: "余额 Balance", points: "积分 Points", count_card: "次卡 Count card",
};

function amountText(entry, value) {
  return entry.account === "stored_value" ? Portal.yuan(value) : String(value);
}

async function load() {
  await Portal.session();
  const [me, ledger, orders] = await Promise.all([
    Portal.get("/portal/api/me"),
    Portal.get("/portal/api/ledger?limit=20"),
    Portal.get("/portal/api/orders?limit=20"),
  ]);
  document.getElementById("points").textContent = me.points;
  document.getElementById("balance").textContent = "¥" + Portal.yuan(me.balance_fen);
  document.getElementById("level").textContent = me.level;
  document.getElementById("card-number").textContent = me.card_number || "–";

  const rows = ledger.items.map((e) => Portal.el("tr", { "data-entry": e.id },
    Portal.el("td", {}, Portal.when(e.created_at)),
    Portal.el("td", {}, `${ACCOUNTS[e.account] || e.account} · ${KINDS[e.kind] || e.kind}`),
    Portal.el("td", { class: "num " + (e.amount < 0 ? "minus" : "plus") },
      (e.amount > 0 ? "+" : "") + amountText(e, e.amount)),
    Portal.el("td", { class: "num" }, amountText(e, e.balance_after))));
  document.getElementById("ledger").replaceChildren(...rows);
  document.getElementById("ledger-empty").hidden = rows.length > 0;

  const items = orders.items.map((o) => Portal.el("li", { "data-order": o.id },
    Portal.el("div", { class: "line" },
      Portal.el("strong", {}, "¥" + Portal.yuan(o.total_fen)),
      Portal.el("span", { class: "muted" }, Portal.when(o.created_at))),
    Portal.el("div", { class: "line muted" },
      Portal.el("span", {}, o.store_name || o.store),
      Portal.el("span", {}, o.payments.map((p) => METHODS[p.method] || p.method).join(" + "))),
    o.points_earned ? Portal.el("div", { class: "line plus" }, `+${o.points_earned} 积分 points`) : null,
    o.refunded_fen ? Portal.el("div", { class: "line minus" }, `已退 Refunded ¥${Portal.yuan(o.refunded_fen)}`) : null));
  document.getElementById("orders").replaceChildren(...items);
  document.getElementById("orders-empty").hidden = items.length > 0;
}

load().catch((error) => Portal.show("message", error.message, false));
