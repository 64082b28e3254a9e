"""Payment-provider adapters: payment code → the payer's account id (openid / user_id).

WeChat Pay v2 ``tools/authcodetoopenid``: POST XML {appid, mch_id, [sub_appid, sub_mch_id],
auth_code, nonce_str, sign}; ``sign`` is the upper-case hex MD5 of the non-empty parameters
sorted by name as ``k=v&…`` followed by ``&key=<API key>``. The answer is XML with
``return_code``, ``result_code`` and ``openid``, signed the same way (checked when present).

Alipay has no public "auth code to user" call for merchants; ``AlipayAdapter`` therefore
speaks a small JSON protocol to a configurable bridge (e.g. the chain's own service that runs
``alipay.trade.pay`` / face-to-face and knows ``buyer_user_id``). It assumes:
POST ``{base_url}/auth-code/user`` with JSON ``{app_id, auth_code, timestamp, nonce, sign}``,
``sign`` = lower-case hex HMAC-SHA256 (key = ``alipay_key``) of the other fields sorted as
``k=v&…``; the answer ``{"code": "10000", "user_id": "2088…"}`` on success, or
``{"code": "40004", "sub_code": "…AUTH_CODE_EXPIRED|…AUTH_CODE_INVALID|…", "sub_msg": …}``.

Provider errors map to central's: an expired code is 410, a code the provider rejects is
422, anything else (network, bad signature, system error) is 502.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Final, Protocol

import aiohttp

from .errors import Expired, Invalid, UpstreamError
from .logs import get_logger

log = get_logger(__name__)
MAX_RESPONSE_BYTES: Final = 64 * 1024
WECHAT_EXPIRED: Final = frozenset({"AUTHCODEEXPIRE"})
WECHAT_REJECTED: Final = frozenset({"AUTH_CODE_ERROR", "AUTH_CODE_INVALID", "PARAM_ERROR"})


class PaymentAdapter(Protocol):
    """Resolves one provider's payment codes."""

    provider: str

    async def account_for(self, auth_code: str) -> str:
        """The payer's account id for ``auth_code``; raises a ``CentralError`` otherwise."""
        ...


def wechat_sign(params: Mapping[str, str], api_key: str) -> str:
    """WeChat Pay v2 MD5 signature over every non-empty parameter except ``sign``."""
    pairs = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if v != "" and k != "sign")
    return hashlib.md5(f"{pairs}&key={api_key}".encode()).hexdigest().upper()


def to_xml(params: Mapping[str, str]) -> bytes:
    """``<xml><k>v</k>…</xml>`` as WeChat Pay v2 expects (values escaped, not CDATA)."""
    root = ET.Element("xml")
    for key, value in params.items():
        ET.SubElement(root, key).text = value
    return ET.tostring(root, encoding="unicode").encode()


def from_xml(body: bytes) -> dict[str, str]:
    """Parse a flat WeChat XML document; refuses DTDs (no entity expansion attacks)."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise ValueError("XML with a DTD is not accepted")
    root = ET.fromstring(body)
    if root.tag != "xml":
        raise ValueError(f"unexpected root element {root.tag!r}")
    return {child.tag: (child.text or "") for child in root}


class WeChatPayAdapter:
    """WeChat Pay v2 ``authcodetoopenid`` against ``base_url`` (the real one or a fake)."""

    provider = "wechat"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        appid: str,
        mch_id: str,
        api_key: str,
        sub_appid: str | None = None,
        sub_mch_id: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/tools/authcodetoopenid"
        self._api_key = api_key
        self._base = {"appid": appid, "mch_id": mch_id}
        if sub_appid:
            self._base["sub_appid"] = sub_appid
        if sub_mch_id:
            self._base["sub_mch_id"] = sub_mch_id
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def account_for(self, auth_code: str) -> str:
        params = {**self._base, "auth_code": auth_code, "nonce_str": secrets.token_hex(16)}
        params["sign"] = wechat_sign(params, self._api_key)
        try:
            async with self._session.post(
                self._url,
                data=to_xml(params),
                headers={"Content-Type": "text/xml; charset=utf-8"},
                timeout=self._timeout,
            ) as resp:
                body = await resp.content.read(MAX_RESPONSE_BYTES)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(
                f"WeChat Pay unreachable: {type(exc).__name__}", code="wechat_unreachable"
            ) from exc
        if status != 200:
            raise UpstreamError(f"WeChat Pay answered HTTP {status}", code="wechat_error")
        try:
            answer = from_xml(body)
        except (ValueError, ET.ParseError) as exc:
            raise UpstreamError("WeChat Pay answered malformed XML", code="wechat_error") from exc
        if answer.get("return_code") != "SUCCESS":
            raise UpstreamError(
                f"WeChat Pay: {answer.get('return_msg', 'communication failure')}",
                code="wechat_error",
            )
        sign = answer.get("sign")
        if sign is not None and not hmac.compare_digest(sign, wechat_sign(answer, self._api_key)):
            raise UpstreamError("WeChat Pay answer has a bad signature", code="wechat_bad_sign")
        if answer.get("result_code") != "SUCCESS":
            err = answer.get("err_code", "")
            if err in WECHAT_EXPIRED:
                raise Expired("payment code expired", code="payment_code_expired")
            if err in WECHAT_REJECTED:
                raise Invalid("payment code rejected by WeChat Pay", code="payment_code_invalid")
            raise UpstreamError(f"WeChat Pay error {err or 'unknown'}", code="wechat_error")
        openid = answer.get("openid", "")
        if not openid:
            raise UpstreamError("WeChat Pay answer has no openid", code="wechat_error")
        log.info("wechat_openid_resolved", auth_code=auth_code, openid=openid)
        return openid


def alipay_sign(params: Mapping[str, str], key: str) -> str:
    """The bridge's signature: HMAC-SHA256 hex over sorted ``k=v&…`` (``sign`` excluded)."""
    pairs = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign")
    return hmac.new(key.encode(), pairs.encode(), hashlib.sha256).hexdigest()


class AlipayAdapter:
    """The documented JSON bridge for Alipay payment codes (see the module docstring)."""

    provider = "alipay"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        app_id: str,
        key: str,
        timeout: float = 5.0,
    ) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/auth-code/user"
        self._app_id = app_id
        self._key = key
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def account_for(self, auth_code: str) -> str:
        params = {
            "app_id": self._app_id,
            "auth_code": auth_code,
            "timestamp": str(int(time.time())),
            "nonce": secrets.token_hex(8),
        }
        params["sign"] = alipay_sign(params, self._key)
        try:
            async with self._session.post(self._url, json=params, timeout=self._timeout) as resp:
                body = await resp.content.read(MAX_RESPONSE_BYTES)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(
                f"Alipay bridge unreachable: {type(exc).__name__}", code="alipay_unreachable"
            ) from exc
        try:
            answer = json.loads(body)
            if not isinstance(answer, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise UpstreamError(
                "Alipay bridge answered malformed JSON", code="alipay_error"
            ) from exc
        if status == 200 and answer.get("code") == "10000" and answer.get("user_id"):
            return str(answer["user_id"])
        sub_code = str(answer.get("sub_code", ""))
        if sub_code.endswith("EXPIRED"):
            raise Expired("payment code expired", code="payment_code_expired")
        if sub_code.endswith("INVALID"):
            raise Invalid("payment code rejected by Alipay", code="payment_code_invalid")
        raise UpstreamError(f"Alipay bridge error {sub_code or status}", code="alipay_error")
