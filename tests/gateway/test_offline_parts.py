"""The offline resolution cache and the payment-code window."""

from __future__ import annotations

from pathlib import Path

from gatewayd.payment_window import PaymentWindow
from gatewayd.protocols.tokens import TokenKind
from gatewayd.resolution_cache import ResolutionCache

MEMBER = {"id": "m1", "name": "Li Lei", "level": "silver"}


def test_cache_stores_hashes_never_tokens(tmp_path: Path) -> None:
    cache = ResolutionCache(tmp_path, ttl=3600)
    assert cache.put(TokenKind.PHONE, "13800138000", MEMBER, now=1000)
    assert cache.get(TokenKind.PHONE, "13800138000", now=2000) == MEMBER
    assert cache.get(TokenKind.CARD_NUMBER, "13800138000", now=2000) is None  # kind matters
    assert cache.get(TokenKind.PHONE, "13800138000", now=1000 + 3601) is None  # TTL
    cache.close()
    raw = (tmp_path / "cache.sqlite3").read_bytes()
    assert b"13800138000" not in raw
    assert (tmp_path / "cache.key").stat().st_mode & 0o077 == 0


def test_payment_and_consumption_codes_are_never_cached(tmp_path: Path) -> None:
    cache = ResolutionCache(tmp_path)
    for kind in (TokenKind.WECHAT_PAYMENT_CODE, TokenKind.ALIPAY_PAYMENT_CODE,
                 TokenKind.UNIONPAY_PAYMENT_CODE, TokenKind.CONSUMPTION_CODE):
        assert not cache.put(kind, "134567890123456789", MEMBER)
        assert cache.get(kind, "134567890123456789") is None


def test_payment_window_claimed_once_by_its_terminal_within_the_window() -> None:
    window = PaymentWindow(window=300)
    window.hold("pos1", "wechat_payment_code", "134567890123456789", "e1", MEMBER, now=0)
    assert window.claim("pos2", now=10) is None  # another terminal cannot take it
    held = window.claim("pos1", now=10)
    assert held is not None and held.code == "134567890123456789"
    assert held.as_claim(10)["expires_in"] == 290
    assert window.claim("pos1", now=11) is None  # gone after one claim
    window.hold("pos1", "wechat_payment_code", "134567890123456780", "e2", MEMBER, now=20)
    assert window.claim("pos1", now=321) is None  # gone after the window
