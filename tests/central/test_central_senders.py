"""Senders over real sockets: a fake SMS gateway (aiohttp) and an SMTP server (aiosmtpd).

Also the ``{name}`` template syntax (hypothesis) and the sender registry's configuration.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.central.senders import (
    HttpSmsSender,
    OutgoingMessage,
    SenderConfigError,
    SenderRegistry,
    SmtpSender,
    Template,
    TemplateError,
    json_path,
    plugin_factories,
)
from gatewayd.central.testing import free_port, start_app

# --- the fakes (also used by the notification and service-plan tests) ----------------------


class FakeSmsGateway:
    """A Chinese-style SMS gateway: JSON in, ``{"code": "0", "msgid": ...}`` out.

    ``script`` holds the answers to give next as (status, body); when empty it accepts.
    """

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.script: list[tuple[int, Any]] = []
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.text()
        if request.content_type == "application/json":
            body = json.loads(raw)
        else:
            body = dict(urllib.parse.parse_qsl(raw))
        self.headers.append(dict(request.headers))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.script:
            status, answer = self.script.pop(0)
            return web.json_response(answer, status=status)
        self.received.append({**body, "query": dict(request.query)})
        return web.json_response({"code": "0", "msgid": f"m{len(self.received)}"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/sms/send", self.handle)
        return app


@pytest.fixture(name="sms_gateway")
async def sms_gateway_fixture() -> AsyncIterator[tuple[FakeSmsGateway, str]]:
    fake = FakeSmsGateway()
    runner, url = await start_app(fake.app())
    yield fake, url
    await runner.cleanup()


class RecordingHandler:
    """aiosmtpd handler: keeps every message; refuses recipients at ``refuse.example``."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.endswith("@refuse.example"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 Message accepted"


@pytest.fixture(name="smtp_server")
def smtp_server_fixture() -> Iterator[tuple[RecordingHandler, int]]:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def sms_options(url: str, **extra: Any) -> dict[str, Any]:
    """The http_sms options that fit ``FakeSmsGateway``."""
    return {
        "plugin": "http_sms",
        "url": url + "/sms/send?sig={id}",
        "headers": {"X-Api-Key": "k-123"},
        "body": '{"mobile": "{phone}", "content": "{text}", "id": {id}}',
        "success_json_path": "code",
        "success_value": "0",
        "provider_id_json_path": "msgid",
        "timeout": 15,
        **extra,
    }


def message(text: str = "尊敬的会员，您好", address: str = "13800138000") -> OutgoingMessage:
    return OutgoingMessage(id=7, channel="sms", address=address, text=text, kind="points_earned")


# --- templates ----------------------------------------------------------------------------

names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
literals = st.text(max_size=20).map(lambda s: s.replace("{", "{{").replace("}", "}}"))


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_template_error(source: str) -> None:
    try:
        template = Template.parse(source)
    except TemplateError:
        return
    assert template.render({}) is not None


@given(st.lists(st.one_of(literals, names.map(lambda n: "{" + n + "}")), max_size=8))
def test_rendering_fills_each_placeholder_and_unescapes_braces(pieces: list[str]) -> None:
    template = Template.parse("".join(pieces))
    values = {name: f"<{name}>" for name in template.names}
    expected = "".join(
        f"<{p[1:-1]}>"
        if p.startswith("{") and not p.startswith("{{") and p.endswith("}") and p[1:-1] in values
        else p.replace("{{", "{").replace("}}", "}")
        for p in pieces
    )
    assert template.render(values) == expected


def test_template_rejects_unbalanced_and_attribute_access() -> None:
    for bad in ("{", "}", "a {name", "{member.__class__}", "{0}", "{Name}", "{a[1]}"):
        with pytest.raises(TemplateError):
            Template.parse(bad)
    assert Template.parse("{a}{{b}}{missing}").render({"a": 1}) == "1{b}"


@given(st.text(max_size=100))
def test_lenient_templates_keep_every_other_brace(source: str) -> None:
    template = Template.lenient(source, frozenset({"phone"}))
    assert template.render({"phone": "{phone}"}) == source
    assert template.names <= {"phone"}


def test_json_path() -> None:
    doc = {"result": {"items": [{"code": 0}]}}
    assert json_path(doc, "result.items.0.code") == 0
    assert json_path(doc, "result.items.3.code") is None
    assert json_path("text", "a") is None


# --- HTTP SMS -------------------------------------------------------------------------------


async def test_http_sms_sends_json_with_escaped_text(
    sms_gateway: tuple[FakeSmsGateway, str],
) -> None:
    fake, url = sms_gateway
    async with aiohttp.ClientSession() as http:
        sender = HttpSmsSender("sms", sms_options(url), http)
        text = '您好 "引号" \\ 换行\n{括号}'
        result = await sender.send(message(text))
    assert result.ok and result.provider_id == "m1"
    assert fake.received == [
        {"mobile": "13800138000", "content": text, "id": 7, "query": {"sig": "7"}}
    ]
    assert fake.headers[0]["X-Api-Key"] == "k-123"
    assert fake.headers[0]["Content-Type"].startswith("application/json")


async def test_http_sms_form_encoding(sms_gateway: tuple[FakeSmsGateway, str]) -> None:
    fake, url = sms_gateway
    options = sms_options(
        url, body="mobile={phone}&content={text}", body_encoding="form", success_json_path=None
    )
    async with aiohttp.ClientSession() as http:
        result = await HttpSmsSender("sms", options, http).send(message("积分 & 余额=100%"))
    assert result.ok
    assert fake.received[0]["mobile"] == "13800138000"
    assert fake.received[0]["content"] == "积分 & 余额=100%"


async def test_http_sms_failures_are_classified(sms_gateway: tuple[FakeSmsGateway, str]) -> None:
    fake, url = sms_gateway
    fake.script = [
        (200, {"code": "4085", "msg": "余额不足"}),
        (500, {"msg": "busy"}),
        (400, {"msg": "bad mobile"}),
        (429, {"msg": "slow down"}),
    ]
    async with aiohttp.ClientSession() as http:
        sender = HttpSmsSender("sms", sms_options(url), http)
        refused = await sender.send(message())
        busy = await sender.send(message())
        bad = await sender.send(message())
        limited = await sender.send(message())
    assert (refused.ok, refused.retryable) == (False, True) and "4085" in (refused.error or "")
    assert (busy.ok, busy.retryable) == (False, True)
    assert (bad.ok, bad.retryable) == (False, False)
    assert (limited.ok, limited.retryable) == (False, True)
    assert fake.received == []


async def test_http_sms_regex_check_and_timeouts(sms_gateway: tuple[FakeSmsGateway, str]) -> None:
    fake, url = sms_gateway
    options = sms_options(url, success_json_path=None, success_regex=r'"code":\s*"0"')
    async with aiohttp.ClientSession() as http:
        assert (await HttpSmsSender("sms", options, http).send(message())).ok
        fake.delay = 1.0
        slow = HttpSmsSender("sms", {**options, "timeout": 0.2}, http)
        result = await slow.send(message())
        assert not result.ok and result.retryable and "Timeout" in (result.error or "")
        closed = HttpSmsSender("sms", {**options, "url": f"http://127.0.0.1:{free_port()}/"}, http)
        result = await closed.send(message())
        assert not result.ok and result.retryable


async def test_http_sms_bad_options_are_config_errors() -> None:
    async with aiohttp.ClientSession() as http:
        for options in (
            {},
            {"url": "http://x/", "timeout": "soon"},
            {"url": "http://x/", "body_encoding": "xml"},
            {"url": "http://x/", "success_regex": "("},
        ):
            with pytest.raises(SenderConfigError):
                HttpSmsSender("sms", options, http)


# --- SMTP -------------------------------------------------------------------------------------


async def test_smtp_delivers_utf8_and_classifies_refusals(
    smtp_server: tuple[RecordingHandler, int],
) -> None:
    handler, port = smtp_server
    async with aiohttp.ClientSession() as http:
        sender = SmtpSender(
            "email",
            {"host": "127.0.0.1", "port": port, "from": "会员中心 <hq@chain.example>"},
            http,
        )
        sent = await sender.send(
            OutgoingMessage(
                id=3, channel="email", address="li@example.com", text="生日快乐！", subject="祝福"
            )
        )
        refused = await sender.send(
            OutgoingMessage(id=4, channel="email", address="x@refuse.example", text="hi")
        )
        down = SmtpSender("email", {"port": free_port(), "from": "hq@chain.example"}, http)
        unreachable = await down.send(
            OutgoingMessage(id=5, channel="email", address="li@example.com", text="hi")
        )
    assert sent.ok and sent.provider_id and "notification-3" in sent.provider_id
    assert len(handler.messages) == 1
    delivered = handler.messages[0]
    assert delivered["Subject"] == "祝福" and delivered["To"] == "li@example.com"
    assert delivered.get_content().strip() == "生日快乐！"
    assert (refused.ok, refused.retryable) == (False, False)
    assert "refuse.example" not in (refused.error or "")  # no address in stored errors
    assert (unreachable.ok, unreachable.retryable) == (False, True)


# --- the registry -------------------------------------------------------------------------


async def test_registry_from_file_and_plugins(tmp_path: Path) -> None:
    path = tmp_path / "senders.toml"
    path.write_text(
        '[sms]\nplugin = "http_sms"\nurl = "http://127.0.0.1:1/send"\n'
        '[email]\nplugin = "smtp"\nfrom = "hq@chain.example"\n',
        encoding="utf-8",
    )

    class WeCom:
        def __init__(self, channel: str, options: Any, http: Any) -> None:
            self.channel = channel
            self.options = options

        async def send(self, message: OutgoingMessage) -> Any:
            raise NotImplementedError

    async with aiohttp.ClientSession() as http:
        registry = SenderRegistry.from_file(str(path), http)
        assert registry.channels == {"sms", "email"}
        assert isinstance(registry.get("sms"), HttpSmsSender)
        assert SenderRegistry.from_file(None, http).channels == frozenset()
        custom = SenderRegistry.from_config(
            {"wecom": {"plugin": "wecom", "corp": "c1"}}, http, factories={"wecom": WeCom}
        )
        assert custom.get("wecom").options["corp"] == "c1"  # type: ignore[union-attr]
        for bad in ({"sms": {"plugin": "carrier_pigeon"}}, {"sms": "http_sms"}, {"SMS!": {}}):
            with pytest.raises(SenderConfigError):
                SenderRegistry.from_config(bad, http)
        path.write_text("[sms\n", encoding="utf-8")
        with pytest.raises(SenderConfigError):
            SenderRegistry.from_file(str(path), http)


async def test_entry_point_senders_are_loaded_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A third-party sender installed as a distribution with a ``gatewayd.central.senders``
    entry point is found by name; a broken one fails only when its channel is configured."""
    (tmp_path / "pigeon_sender.py").write_text(
        "class Pigeon:\n"
        "    def __init__(self, channel, options, http):\n"
        "        self.channel = channel\n"
        "        self.loft = options['loft']\n"
        "    async def send(self, message):\n"
        "        raise NotImplementedError\n",
        encoding="utf-8",
    )
    info = tmp_path / "pigeon_sender-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pigeon-sender\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[gatewayd.central.senders]\n"
        "pigeon = pigeon_sender:Pigeon\n"
        "broken = pigeon_sender:Missing\n"
        "smtp = pigeon_sender:Pigeon\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    factories = plugin_factories()
    assert factories["smtp"] is SmtpSender  # a built-in cannot be replaced by accident
    async with aiohttp.ClientSession() as http:
        registry = SenderRegistry.from_config({"pigeons": {"plugin": "pigeon", "loft": "7"}}, http)
        sender = registry.get("pigeons")
        assert sender is not None and sender.channel == "pigeons"
        assert sender.loft == "7"  # type: ignore[attr-defined]
        with pytest.raises(SenderConfigError, match="broken"):
            SenderRegistry.from_config({"x": {"plugin": "broken"}}, http)
