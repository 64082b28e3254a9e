"""What a member message is: its kinds, the built-in templates, chain settings, pure helpers.

Separate from ``notifications.py`` (the outbox service) because these are plain values and
functions with no database: the dispatcher, service plans, alerts and the portal use them
too. Every name stays importable from ``notifications`` as before.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from zoneinfo import ZoneInfo

from gatewayd.protocols.tokens import mask

from .errors import Invalid

TRANSACTIONAL_KINDS: Final = frozenset(
    {
        "registered",
        "points_earned",
        "stored_value_debited",
        "recharged",
        "recharge_bonus_paid",
        "refunded",
        "level_upgraded",
        "staff_alert",
        "alert_fired",
        "alert_resolved",
    }
)
MARKETING_KINDS: Final = frozenset(
    {"points_redeemable", "birthday", "dormant", "service_due", "campaign"}
)
KINDS: Final = TRANSACTIONAL_KINDS | MARKETING_KINDS
_OPT_OUT_HINT = "回复TD退订"
DEFAULT_TEMPLATES: Final[dict[str, tuple[str, str]]] = {
    "registered": ("欢迎加入会员", "尊敬的{member_name}，欢迎加入会员！您的会员等级为{level}。"),
    "points_earned": (
        "积分到账",
        "尊敬的{member_name}，您本次获得{points}积分，当前积分{member_points}。",
    ),
    "stored_value_debited": (
        "储值消费提醒",
        "尊敬的{member_name}，您的会员卡消费扣款{amount_yuan}元，余额{balance_yuan}元。"
        "如非本人操作，请立即联系门店。",
    ),
    "recharged": (
        "充值成功",
        "尊敬的{member_name}，您已成功充值{amount_yuan}元，当前余额{balance_yuan}元。",
    ),
    "recharge_bonus_paid": (
        "充值赠送到账",
        "尊敬的{member_name}，充值赠送{bonus_yuan}元已到账，当前余额{balance_yuan}元。",
    ),
    "refunded": (
        "退款提醒",
        "尊敬的{member_name}，退款{amount_yuan}元已退回，当前余额{balance_yuan}元，"
        "当前积分{member_points}。",
    ),
    "level_upgraded": ("会员升级", "恭喜{member_name}，您的会员等级已升级为{level}！"),
    "points_redeemable": (
        "积分可兑换",
        "尊敬的{member_name}，您当前积分{member_points}，可到店兑换礼品。" + _OPT_OUT_HINT,
    ),
    "birthday": (
        "生日快乐",
        "亲爱的{member_name}，祝您生日快乐！生日期间到店消费享会员专属优惠。" + _OPT_OUT_HINT,
    ),
    "dormant": (
        "好久不见",
        "尊敬的{member_name}，好久不见！我们为您准备了会员专属优惠，期待您再次光临。"
        + _OPT_OUT_HINT,
    ),
    "service_due": (
        "服务提醒",
        "尊敬的{member_name}，您的服务“{plan_text}”将于{due_date}到期，请及时到{store_name}办理。"
        + _OPT_OUT_HINT,
    ),
    "campaign": ("会员活动", "{text}"),
    # Staff messages (``send_to``); the HQ dashboard's alert rules use the two alert_ kinds.
    "staff_alert": ("{subject}", "{subject}：{detail}"),
    "alert_fired": ("【告警】{subject}", "【门店告警】{subject}：{detail}（{at}）"),
    "alert_resolved": ("【已恢复】{subject}", "【告警恢复】{subject}：{detail}（{at}）"),
}
_ADDRESS_CHECKS: Final = {
    "sms": re.compile(r"\+?[0-9]{3,20}"),
    "email": re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}"),
}


@dataclass(frozen=True, kw_only=True)
class NotifySettings:
    """Chain-wide notification settings, kept as JSON in ``chain_settings``."""

    quiet_start: str | None = "21:00"
    quiet_end: str | None = "08:00"
    timezone: str = "Asia/Shanghai"
    store_timezones: dict[str, str] = field(default_factory=dict)
    dormant_days: int = 90
    redeemable_points: int = 0
    birthdays: bool = True

    def timezone_of(self, store_id: str | None) -> str:
        return self.store_timezones.get(store_id or "", self.timezone)


def yuan(fen: int) -> str:
    """Integer fen as a yuan string with two decimals, without floats (``-150`` → ``-1.50``)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def template_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """The event's data plus ``<x>_yuan`` for every integer ``<x>_fen``."""
    values = dict(data)
    for key, value in data.items():
        if key.endswith("_fen") and isinstance(value, int) and not isinstance(value, bool):
            values.setdefault(key[: -len("_fen")] + "_yuan", yuan(value))
    return values


def make_dedupe_key(*parts: str) -> str:
    """A unique key for one message; long keys are hashed to fit the column."""
    key = ":".join(parts)
    if len(key) > 190:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def mask_address(address: str) -> str:
    """An address fit for logs and lists: ``l***@example.com``, ``*******5678``."""
    local, at, domain = address.partition("@")
    if at:
        return f"{local[:1]}***@{domain}"
    return mask(address)


def check_address(channel: str, address: str) -> None:
    pattern = _ADDRESS_CHECKS.get(channel)
    if not address or len(address) > 320 or (pattern and not pattern.fullmatch(address)):
        raise Invalid(f"not a valid {channel} address", code="invalid_address")


def local_date(now_s: float, timezone: str) -> dt.date:
    """Today's date in ``timezone`` (birthdays and service plans are store-local dates)."""
    return dt.datetime.fromtimestamp(now_s, ZoneInfo(timezone)).date()
