"""The kiosk page against a real gateway, a real central and headless Chromium.

A seeded central, a gateway linked to it with a simulated scanner on terminal ``kiosk-1``,
and the page opened with the terminal's kiosk key. Screenshots of each state are saved under
tests/artifacts/screenshots/ (copies in docs/screenshots/ are shown in docs/kiosk.md).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from playwright.async_api import Page, expect

from gatewayd.config import TerminalConfig
from gatewayd.kiosk import KioskSessions, hash_key, kiosk_view
from gatewayd.simulate import PtyDevice
from tests.support.broker import Mosquitto
from tests.support.browser import page as browser_page
from tests.support.browser import screenshot
from tests.support.central import CentralProcess, new_secret, seed_demo
from tests.support.gateway import GatewayProcess, write_config

SECRET = new_secret()
TOKEN = "bearer-token-0123456789"
KIOSK_KEY = "kiosk-key-6f1d0c2a9b8e7d6c"
OTHER_KEY = "kiosk-key-for-the-other-one"
DISPLAY_SECONDS = 6


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("kiosk-central")
    keys = seed_demo(workdir, SECRET)
    return workdir / "central.db", keys


@pytest.fixture
def central(tmp_path: Path, seeded: tuple[Path, dict[str, Any]]) -> Iterator[CentralProcess]:
    workdir = tmp_path / "central"
    workdir.mkdir()
    process = CentralProcess(workdir, seeded[0], seeded[1], SECRET).start()
    yield process
    process.stop()


class KioskGateway:
    """gw-1 of store-1: a simulated scanner on ``kiosk-1`` and one on ``pos-1``."""

    def __init__(
        self,
        tmp_path: Path,
        broker: Mosquitto,
        central: CentralProcess | None,
        started: list[GatewayProcess],
    ) -> None:
        self.started = started
        self.scanner = PtyDevice(tmp_path / "kiosk-scanner")
        self.pos_scanner = PtyDevice(tmp_path / "pos-scanner")
        config = write_config(
            tmp_path / "gw.toml",
            mqtt_url=broker.url,
            gateway_id="gw-1",
            store="store-1",
            extra={
                "http": {"token": TOKEN},
                **(
                    {
                        "central": {
                            "url": central.url,
                            "key": central.keys["gateways"]["gw-1"]["api_key"],
                        }
                    }
                    if central is not None
                    else {}
                ),
            },
            devices=[
                {
                    "id": "kscan",
                    "driver": "serial_scanner",
                    "terminal": "kiosk-1",
                    "port": self.scanner.path,
                },
                {
                    "id": "pscan",
                    "driver": "serial_scanner",
                    "terminal": "pos-1",
                    "port": self.pos_scanner.path,
                },
            ],
        )
        with config.open("a") as handle:
            handle.write(
                "[[terminals]]\n"
                'id = "kiosk-1"\n'
                f'kiosk_key_sha256 = "{hash_key(KIOSK_KEY)}"\n'
                'kiosk_lang = "en"\n'
                f"kiosk_display_seconds = {DISPLAY_SECONDS}\n"
                "[[terminals]]\n"
                'id = "pos-1"\n'
                f'kiosk_key_sha256 = "{hash_key(OTHER_KEY)}"\n'
            )
        self.config = config
        self.process = GatewayProcess(config)
        started.append(self.process)

    def scan(self, text: str, scanner: PtyDevice | None = None) -> None:
        (scanner or self.scanner).write(f"{text}\r".encode())

    def restart(self, kiosk_key: str = KIOSK_KEY) -> None:
        """Stop, set the kiosk key of ``kiosk-1`` (restart applies terminal settings), start."""
        self.process.stop()
        text = self.config.read_text()
        for key in (KIOSK_KEY, "another key"):
            text = text.replace(hash_key(key), hash_key(kiosk_key))
        self.config.write_text(text)
        self.process = GatewayProcess(self.config)
        self.started.append(self.process)
        self.process.start()


@pytest.fixture
def kiosk_gateway(
    tmp_path: Path, broker: Mosquitto, central: CentralProcess, gateways: list[GatewayProcess]
) -> KioskGateway:
    gateway = KioskGateway(tmp_path, broker, central, gateways)
    gateway.process.start()
    return gateway


@pytest.fixture
def lone_gateway(tmp_path: Path, broker: Mosquitto, gateways: list[GatewayProcess]) -> KioskGateway:
    """The same gateway with no central configured at all."""
    gateway = KioskGateway(tmp_path, broker, None, gateways)
    gateway.process.start()
    return gateway


async def sign_in(page: Page, gateway: KioskGateway, lang: str | None = None) -> None:
    query = f"terminal=kiosk-1&key={KIOSK_KEY}" + (f"&lang={lang}" if lang else "")
    await page.goto(f"{gateway.process.base_url}/kiosk?{query}")
    await expect(page.locator("body")).to_have_attribute("data-connection", "open")


async def wait_ready_for_next_scan() -> None:
    await asyncio.sleep(0.6)  # past the gateway's repeat window (500 ms)


async def test_kiosk_shows_member_unknown_and_offline_states(
    kiosk_gateway: KioskGateway, central: CentralProcess
) -> None:
    card, cached_card = central.keys["samples"]["card_numbers"][:2]
    async with browser_page() as page:
        await sign_in(page, kiosk_gateway)
        assert "key=" not in page.url  # the sign-in redirect dropped the key
        cookies = await page.context.cookies()
        (cookie,) = [c for c in cookies if c["name"] == "gatewayd_kiosk"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert KIOSK_KEY not in cookie["value"]
        body = page.locator("body")
        await expect(body).to_have_attribute("data-screen", "waiting")
        await expect(page.locator("#waiting-sub")).to_have_text(
            "Scan your member card or member code"
        )
        await screenshot(page, "kiosk-waiting")

        kiosk_gateway.scan(card)
        await expect(body).to_have_attribute("data-screen", "member")
        replayed = await sse_events(kiosk_gateway, "kiosk-1", 2, last_event_id="0.0")
        member = replayed[1]["member"]
        assert replayed[1]["phase"] == "resolved" and member is not None
        await expect(page.locator("#member-name")).to_have_text(member["name"])
        await screenshot(page, "kiosk-member")

        # An event for another terminal never reaches this kiosk.
        await wait_ready_for_next_scan()
        kiosk_gateway.scan("13700000000", kiosk_gateway.pos_scanner)
        await asyncio.sleep(1.0)
        await expect(body).to_have_attribute("data-screen", "member")

        kiosk_gateway.scan("13700000000")  # a phone number no member has
        await expect(body).to_have_attribute("data-screen", "unknown")
        await expect(page.locator("#unknown-title")).to_have_text("Unknown card")
        await expect(page.locator("#unknown-token")).to_have_text("Phone *******0000")
        await screenshot(page, "kiosk-unknown")

        # Cache one card while central is up, then stop central.
        await wait_ready_for_next_scan()
        kiosk_gateway.scan(cached_card)
        await expect(body).to_have_attribute("data-screen", "member")
        central.stop()
        await wait_ready_for_next_scan()
        kiosk_gateway.scan(card[:-1] + str((int(card[-1]) + 1) % 10))  # never seen: no cache
        await expect(body).to_have_attribute("data-screen", "offline")
        await expect(page.locator("#offline-title")).to_have_text(
            "Member details unavailable (offline)"
        )
        text = await page.locator("#offline-token").text_content()
        assert text is not None and text.endswith(card[-4:-1] + str((int(card[-1]) + 1) % 10))
        assert card[:-4] not in text and "*" in text
        await screenshot(page, "kiosk-offline")

        await wait_ready_for_next_scan()
        kiosk_gateway.scan(cached_card)
        await expect(body).to_have_attribute("data-screen", "member")
        await expect(page.locator("#member-cached")).to_be_visible()

        # And back to waiting after the configured time.
        await expect(body).to_have_attribute(
            "data-screen", "waiting", timeout=(DISPLAY_SECONDS + 3) * 1000
        )
        html = await page.content()
        assert card not in html and cached_card not in html


async def test_member_figures_are_formatted_from_fen_in_chinese(
    kiosk_gateway: KioskGateway, central: CentralProcess
) -> None:
    card = central.keys["samples"]["card_numbers"][2]
    kiosk_gateway.scan(card)
    async with aiohttp.ClientSession(
        kiosk_gateway.process.base_url, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as http:
        async with http.get("/v1/events", headers={"Last-Event-ID": "0.0"}) as response:
            async with asyncio.timeout(10):
                async for raw in response.content:
                    line = raw.decode()
                    if line.startswith("data: ") and '"phase":"resolved"' in line:
                        member_id = json.loads(line[6:])["member"]["id"]
                        break
    central.admin(
        "PATCH",
        f"/v1/members/{member_id}",
        {"name": "王小明", "level": "gold", "points": 12345, "balance_fen": 123456},
    )
    async with browser_page() as page:
        await sign_in(page, kiosk_gateway, lang="zh")
        await expect(page.locator("#waiting-title")).to_have_text("欢迎光临")
        await wait_ready_for_next_scan()
        kiosk_gateway.scan(card)
        await expect(page.locator("body")).to_have_attribute("data-screen", "member")
        await expect(page.locator("#member-name")).to_have_text("王小明")
        await expect(page.locator("#member-level")).to_have_text("金卡会员")
        await expect(page.locator("#member-balance")).to_have_text("¥1,234.56")
        await expect(page.locator("#member-points")).to_have_text("12,345")
        await expect(page.locator("#label-balance")).to_have_text("余额")
        await expect(page.locator("#member-phone")).to_have_text(re.compile(r"^手机 \*+\d{4}$"))
        await expect(page.locator("html")).to_have_attribute("lang", "zh")


async def test_kiosk_reconnects_after_gateway_restart(
    kiosk_gateway: KioskGateway, central: CentralProcess
) -> None:
    card, other = central.keys["samples"]["card_numbers"][3:5]
    async with browser_page() as page:
        await sign_in(page, kiosk_gateway)
        body = page.locator("body")
        kiosk_gateway.scan(card)
        await expect(body).to_have_attribute("data-screen", "member")
        first_name = await page.locator("#member-name").text_content()

        kiosk_gateway.process.stop()
        await expect(body).not_to_have_attribute("data-connection", "open", timeout=10_000)
        await screenshot(page, "kiosk-reconnecting")
        kiosk_gateway.restart()
        # Scanned at once: whether the page is back yet or not, replay or live delivers it.
        kiosk_gateway.scan(other)
        await expect(body).to_have_attribute("data-connection", "open", timeout=40_000)
        await expect(page.locator("#member-name")).not_to_have_text(
            first_name or "", timeout=10_000
        )
        await expect(body).to_have_attribute("data-screen", "member")


async def sse_events(
    gateway: KioskGateway,
    terminal: str,
    count: int,
    last_event_id: str | None = None,
    cookie: str | None = None,
) -> list[dict[str, Any]]:
    """The next ``count`` identify events of ``/kiosk/events`` (signing in when no cookie),
    each with its SSE id as ``_sse_id``."""
    async with aiohttp.ClientSession(gateway.process.base_url) as http:
        if cookie is None:
            cookie = await kiosk_cookie(http, terminal, KIOSK_KEY)
        headers = {"Cookie": f"gatewayd_kiosk={cookie}"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        out: list[dict[str, Any]] = []
        async with http.get(f"/kiosk/events?terminal={terminal}", headers=headers) as response:
            assert response.status == 200
            event = sse_id = ""
            async with asyncio.timeout(10):
                async for raw in response.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("id: "):
                        sse_id = line[4:]
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "identify":
                        out.append({**json.loads(line[6:]), "_sse_id": sse_id})
                        if len(out) == count:
                            return out
    return out


async def kiosk_cookie(http: aiohttp.ClientSession, terminal: str, key: str) -> str:
    async with http.get(f"/kiosk?terminal={terminal}&key={key}", allow_redirects=False) as response:
        assert response.status == 303, await response.text()
        assert response.headers["Location"] == f"/kiosk?terminal={terminal}"
        return response.cookies["gatewayd_kiosk"].value


async def test_wrong_key_missing_cookie_and_other_terminals_are_refused(
    lone_gateway: KioskGateway,
) -> None:
    kiosk_gateway = lone_gateway
    base = kiosk_gateway.process.base_url
    async with aiohttp.ClientSession(base) as http:
        async with http.get(
            "/kiosk?terminal=kiosk-1&key=wrong-key", allow_redirects=False
        ) as response:
            assert response.status == 403
            assert "gatewayd_kiosk" not in response.cookies
        async with http.get("/kiosk?terminal=kiosk-1") as response:
            assert response.status == 401
        async with http.get("/kiosk?terminal=pos-2&key=" + KIOSK_KEY) as response:
            assert response.status == 404  # no kiosk key configured for pos-2
        async with http.get("/kiosk/events?terminal=kiosk-1") as response:
            assert response.status == 401
        async with http.get("/kiosk/kiosk.js") as response:
            assert response.status == 401
        cookie = await kiosk_cookie(http, "kiosk-1", KIOSK_KEY)
        signed = {"Cookie": f"gatewayd_kiosk={cookie}"}
        # A kiosk-1 cookie opens kiosk-1 only; the bearer-token API stays closed to it.
        for path in ("/kiosk/events?terminal=pos-1", "/kiosk/session?terminal=pos-1"):
            async with http.get(path, headers=signed) as response:
                assert response.status == 401
        async with http.get("/v1/events", headers=signed) as response:
            assert response.status == 401
        async with http.get("/kiosk/session?terminal=kiosk-1", headers=signed) as response:
            assert response.status == 200
            assert await response.json() == {"terminal": "kiosk-1"}
        async with http.get("/kiosk/kiosk.js", headers=signed) as response:
            assert response.status == 200
        tampered = cookie[:-1] + ("0" if cookie[-1] != "0" else "1")
        async with http.get(
            "/kiosk/session?terminal=kiosk-1", headers={"Cookie": f"gatewayd_kiosk={tampered}"}
        ) as response:
            assert response.status == 401
        async with http.get("/kiosk?terminal=kiosk-1", headers=signed) as response:
            assert response.status == 200
            page = await response.text()
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert 'data-terminal="kiosk-1"' in page
    assert "http://" not in page and "https://" not in page  # nothing loaded from elsewhere
    async with browser_page() as page_:
        response = await page_.goto(f"{base}/kiosk?terminal=kiosk-1&key=wrong-key")
        assert response is not None and response.status == 403
        await expect(page_.locator("h1")).to_have_text("Wrong kiosk key")
        await screenshot(page_, "kiosk-wrong-key")
        assert await page_.context.cookies() == []


async def test_stream_resumes_after_last_event_id_and_hides_payment_codes(
    kiosk_gateway: KioskGateway, central: CentralProcess
) -> None:
    card = central.keys["samples"]["card_numbers"][0]
    async with aiohttp.ClientSession(kiosk_gateway.process.base_url) as http:
        cookie = await kiosk_cookie(http, "kiosk-1", KIOSK_KEY)
    kiosk_gateway.scan(card)
    await wait_ready_for_next_scan()
    kiosk_gateway.scan("134567890123456789")  # a WeChat payment code
    await asyncio.sleep(1.5)  # both resolved (or not) by now
    first = await sse_events(kiosk_gateway, "kiosk-1", 4, last_event_id="0.0", cookie=cookie)
    assert [e["phase"] for e in first] == ["detected", "resolved", "detected", "unknown"]
    # Resuming after the second event gives exactly the two after it.
    resumed = await sse_events(
        kiosk_gateway, "kiosk-1", 2, last_event_id=first[1]["_sse_id"], cookie=cookie
    )
    assert resumed == first[2:]
    raw = json.dumps(first)
    assert card not in raw and "134567890123456789" not in raw
    payment = [e for e in first if e["kind"] == "wechat_payment_code"]
    assert payment and all(e["token_masked"] is None for e in payment)
    assert first[0]["token_masked"] == "*" * (len(card) - 4) + card[-4:]
    assert set(first[1]["member"] or {}) <= {
        "name",
        "level",
        "points",
        "balance_fen",
        "phone_masked",
    }


def test_kiosk_view_keeps_only_what_the_screen_shows() -> None:
    event = {
        "event_id": "01J",
        "ts": "2026-11-22T10:00:00.000Z",
        "store": "s",
        "gateway": "g",
        "terminal": "kiosk-1",
        "device": "d",
        "method": "barcode",
        "phase": "resolved",
        "token": {"kind": "phone", "value": "13912345678", "rings": 2},
        "member": {
            "id": 7,
            "name": "Li Na",
            "level": "gold",
            "points": 12,
            "balance_fen": 150,
            "phone_masked": "*******5678",
            "card": {"number": "8800001234"},
        },
        "source": "central",
    }
    view = json.loads(kiosk_view(json.dumps(event)))
    assert view["token_masked"] == "*******5678"
    assert view["member"] == {
        "name": "Li Na",
        "level": "gold",
        "points": 12,
        "balance_fen": 150,
        "phone_masked": "*******5678",
    }
    assert "13912345678" not in json.dumps(view) and "8800001234" not in json.dumps(view)


def test_kiosk_sessions_accept_only_their_own_cookies(tmp_path: Path) -> None:
    sessions = KioskSessions(tmp_path)
    config = TerminalConfig(id="k1", kiosk_key_sha256=hash_key("a key"), kiosk_session_days=2)
    cookie = sessions.issue("k1", hash_key("a key"))
    assert sessions.check(cookie, config)
    # The secret survives a restart (a new instance reads the same file), mode 0600.
    assert KioskSessions(tmp_path).check(cookie, config)
    assert (tmp_path / "kiosk.secret").stat().st_mode & 0o777 == 0o600
    # A new key, another terminal, or an expired cookie is refused.
    assert not sessions.check(cookie, config.model_copy(update={"kiosk_key_sha256": hash_key("b")}))
    assert not sessions.check(cookie, config.model_copy(update={"id": "k2"}))
    assert not sessions.check(cookie, config, now=time.time() + 3 * 86400)
    assert not sessions.check(cookie, config.model_copy(update={"kiosk_key_sha256": None}))


@given(st.text(max_size=200))
def test_kiosk_sessions_refuse_arbitrary_cookies(cookie: str) -> None:
    assert not _SESSIONS.check(cookie, _CONFIG)


@given(st.text(max_size=30), st.text(max_size=80))
def test_kiosk_sessions_refuse_forged_cookies_of_the_right_shape(issued: str, mac: str) -> None:
    assert not _SESSIONS.check(f"v1~k1~{issued}~{mac}", _CONFIG)


def test_a_damaged_secret_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "kiosk.secret").write_text("")  # cut short by a crash
    cookie = KioskSessions(tmp_path).issue("k1", _CONFIG.kiosk_key_sha256 or "")
    assert len((tmp_path / "kiosk.secret").read_text()) == 64
    assert KioskSessions(tmp_path).check(cookie, _CONFIG)


@given(st.integers(min_value=0, max_value=255), st.integers(min_value=0, max_value=200))
def test_kiosk_sessions_refuse_altered_cookies(new_char: int, position: int) -> None:
    cookie = _SESSIONS.issue("k1", _CONFIG.kiosk_key_sha256 or "")
    index = position % len(cookie)
    altered = cookie[:index] + chr(new_char) + cookie[index + 1 :]
    assert _SESSIONS.check(altered, _CONFIG) is (altered == cookie)


_CONFIG = TerminalConfig(id="k1", kiosk_key_sha256=hash_key("the key"))


def _sessions() -> KioskSessions:
    import tempfile

    return KioskSessions(Path(tempfile.mkdtemp(prefix="kiosk-sessions-")))


_SESSIONS = _sessions()


async def test_without_central_the_kiosk_says_offline(lone_gateway: KioskGateway) -> None:
    async with browser_page() as page:
        await sign_in(page, lone_gateway)
        async with aiohttp.ClientSession(
            lone_gateway.process.base_url, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as http:
            async with http.post(
                "/v1/inputs", json={"device": "kscan", "text": "8800001234567"}
            ) as response:
                assert response.status == 201
        body = page.locator("body")
        await expect(body).to_have_attribute("data-screen", "reading")
        await expect(body).to_have_attribute("data-screen", "offline")
        await expect(page.locator("#offline-token")).to_have_text("Card *********4567")


async def test_a_changed_key_signs_the_kiosk_out_and_it_retries_by_itself(
    lone_gateway: KioskGateway,
) -> None:
    async with browser_page() as page:
        await sign_in(page, lone_gateway)
        body = page.locator("body")
        lone_gateway.restart(kiosk_key="another key")
        # The stream now answers 401: the browser gives up, the page asks /kiosk/session.
        await expect(body).to_have_attribute("data-screen", "signedout", timeout=20_000)
        await expect(body).to_have_attribute("data-connection", "closed")
        await screenshot(page, "kiosk-signed-out")
        lone_gateway.restart()  # the old key again: the cookie is valid again
        await expect(body).to_have_attribute("data-connection", "open", timeout=40_000)
        await expect(body).to_have_attribute("data-screen", "waiting")
        lone_gateway.scan("8800001234567")
        await expect(body).to_have_attribute("data-screen", "reading")
