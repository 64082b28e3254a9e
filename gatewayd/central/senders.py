"""Senders: how a rendered notification leaves central (SMS over HTTP, email over SMTP, ...).

A sender is a plugin: an object with a ``channel`` and ``async send(message) -> SendResult``.
Built-ins are ``http_sms`` (a template-driven HTTP gateway: method, URL, headers and body with
``{phone}``/``{text}`` placeholders and a success check, which fits most Chinese SMS gateways
without code) and ``smtp`` (the standard library's ``smtplib`` in a thread). More come from
the entry-point group ``gatewayd.central.senders``: each entry point names a factory
``(channel, options, http) -> Sender``.

Which senders run is configured in a TOML file (``notify_senders``): one table per channel,
``plugin`` naming the factory, the rest its options. This module also holds the ``{name}``
template syntax that both message texts and HTTP bodies use.
"""

from __future__ import annotations

import asyncio
import json
import re
import smtplib
import ssl
import time
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Final, Protocol

import aiohttp

from .errors import CentralError
from .logs import get_logger

log = get_logger(__name__)
ENTRY_POINT_GROUP: Final = "gatewayd.central.senders"
MAX_TEMPLATE: Final = 4000


class TemplateError(CentralError):
    """A template that cannot be parsed: an unbalanced brace or a bad placeholder name."""

    status = 422
    default_code = "invalid_template"


class SenderConfigError(CentralError):
    """The senders file is missing, malformed, or names an unknown plugin."""

    default_code = "invalid_senders"


# --- templates ---------------------------------------------------------------------------

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|\{|\}")
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class Template:
    """``{name}`` placeholders and ``{{``/``}}`` for literal braces; nothing else.

    Deliberately not ``str.format``: admins edit templates, and format's attribute and index
    access (``{member.__class__}``) must not be reachable from a template.
    """

    parts: tuple[str | tuple[str], ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        if len(source) > MAX_TEMPLATE:
            raise TemplateError(f"template over {MAX_TEMPLATE} characters")
        parts: list[str | tuple[str]] = []
        pos = 0
        for match in _TOKEN.finditer(source):
            if match.start() > pos:
                parts.append(source[pos : match.start()])
            token = match.group(0)
            if token in ("{{", "}}"):
                parts.append(token[0])
            elif token in ("{", "}"):
                raise TemplateError(f"unbalanced {token!r} at character {match.start()}")
            else:
                name = match.group(1)
                if not _NAME.fullmatch(name):
                    raise TemplateError(f"bad placeholder {{{name[:40]}}}: use lowercase_names")
                parts.append((name,))
            pos = match.end()
        if pos < len(source):
            parts.append(source[pos:])
        return cls(tuple(parts))

    @classmethod
    def lenient(cls, source: str, names: frozenset[str]) -> Template:
        """Only ``{name}`` for the given names is a placeholder; every other brace is text.

        For HTTP bodies and headers, where JSON's own braces must stay as they are.
        """
        parts: list[str | tuple[str]] = []
        pos = 0
        for match in re.finditer(r"\{([a-z_][a-z0-9_]*)\}", source):
            if match.group(1) in names:
                parts += [source[pos : match.start()], (match.group(1),)]
                pos = match.end()
        parts.append(source[pos:])
        return cls(tuple(p for p in parts if p != ""))

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p[0] for p in self.parts if isinstance(p, tuple))

    def render(self, values: Mapping[str, Any], escape: Callable[[str], str] = str) -> str:
        """Fill the placeholders; a value that is missing renders as nothing."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, tuple):
                value = values.get(part[0])
                out.append(escape("" if value is None else str(value)))
            else:
                out.append(part)
        return "".join(out)


# --- the plugin contract -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OutgoingMessage:
    """One rendered notification, as a sender sees it."""

    id: int
    channel: str
    address: str
    text: str
    subject: str | None = None
    kind: str = ""


@dataclass(frozen=True, kw_only=True)
class SendResult:
    """What became of one attempt. ``retryable`` False means retrying cannot help (a
    rejected address); the dispatcher then fails the message at once."""

    ok: bool
    retryable: bool = True
    provider_id: str | None = None
    error: str | None = None


class Sender(Protocol):
    """A way out for one channel. ``send`` never raises for delivery problems: it answers
    ``SendResult(ok=False, ...)`` (the dispatcher treats an exception as a retryable error)."""

    channel: str

    async def send(self, message: OutgoingMessage) -> SendResult: ...


SenderFactory = Callable[[str, Mapping[str, Any], aiohttp.ClientSession], Sender]


# --- HTTP SMS ------------------------------------------------------------------------------


def _json_escape(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def _form_escape(value: str) -> str:
    return urllib.parse.quote_plus(value)


_ESCAPES: Final[dict[str, Callable[[str], str]]] = {
    "json": _json_escape,
    "form": _form_escape,
    "raw": str,
}
_CONTENT_TYPES: Final = {
    "json": "application/json; charset=utf-8",
    "form": "application/x-www-form-urlencoded; charset=utf-8",
    "raw": "text/plain; charset=utf-8",
}


def json_path(document: Any, path: str) -> Any:
    """``a.b.0.c`` into parsed JSON; None when any step is missing."""
    for step in path.split("."):
        if isinstance(document, dict):
            document = document.get(step)
        elif isinstance(document, list) and step.isdigit() and int(step) < len(document):
            document = document[int(step)]
        else:
            return None
    return document


HTTP_PLACEHOLDERS: Final = frozenset({"phone", "text", "subject", "id", "timestamp"})


class HttpSmsSender:
    """Any HTTP SMS gateway described by options (see ``docs/notifications.md``).

    Placeholders in ``url``, ``headers`` and ``body``: ``{phone}``, ``{text}``,
    ``{subject}``, ``{id}`` (the notification id, for gateways that dedupe) and
    ``{timestamp}`` (epoch seconds). ``body_encoding`` (json, form, raw) escapes the values
    for the body; URL values are always percent-encoded. Success: the status is in
    ``success_status`` and, when given, ``success_json_path`` equals ``success_value`` and
    ``success_regex`` matches the body. 4xx answers (but 408 and 429) are not retried.
    """

    def __init__(self, channel: str, options: Mapping[str, Any], http: aiohttp.ClientSession):
        self.channel = channel
        self._http = http
        try:
            self._method = str(options.get("method", "POST")).upper()
            self._url = Template.lenient(str(options["url"]), HTTP_PLACEHOLDERS)
            headers = dict(options.get("headers", {}))
            self._headers = {
                str(k): Template.lenient(str(v), HTTP_PLACEHOLDERS) for k, v in headers.items()
            }
            self._encoding = str(options.get("body_encoding", "json"))
            if self._encoding not in _ESCAPES:
                raise SenderConfigError(f"{channel}: body_encoding must be json, form or raw")
            body = options.get("body")
            self._body = Template.lenient(str(body), HTTP_PLACEHOLDERS) if body else None
            self._success_status = {int(s) for s in options.get("success_status", [200])}
            self._json_path = options.get("success_json_path")
            self._success_value = str(options.get("success_value", ""))
            regex = options.get("success_regex")
            self._regex = re.compile(str(regex)) if regex else None
            self._id_path = options.get("provider_id_json_path")
            self._timeout = float(options.get("timeout", 10.0))
        except (KeyError, TypeError, ValueError, re.error, TemplateError) as exc:
            raise SenderConfigError(f"{channel}: bad http_sms options: {exc}") from exc

    async def send(self, message: OutgoingMessage) -> SendResult:
        values = {
            "phone": message.address,
            "text": message.text,
            "subject": message.subject or "",
            "id": message.id,
            "timestamp": int(time.time()),
        }
        url = self._url.render(values, lambda v: urllib.parse.quote(v, safe=""))
        headers = {k: t.render(values) for k, t in self._headers.items()}
        data = None
        if self._body is not None:
            data = self._body.render(values, _ESCAPES[self._encoding]).encode()
            headers.setdefault("Content-Type", _CONTENT_TYPES[self._encoding])
        try:
            async with self._http.request(
                self._method,
                url,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as resp:
                text = await resp.text(errors="replace")
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendResult(ok=False, error=f"http: {type(exc).__name__}: {exc}"[:300])
        return self._judge(status, text)

    def _judge(self, status: int, text: str) -> SendResult:
        if status not in self._success_status:
            final = 400 <= status < 500 and status not in (408, 429)
            return SendResult(ok=False, retryable=not final, error=f"status {status}: {text[:200]}")
        parsed: Any = None
        if self._json_path or self._id_path:
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
        if self._json_path:
            found = json_path(parsed, str(self._json_path))
            if found is None or str(found) != self._success_value:
                return SendResult(ok=False, error=f"gateway refused: {text[:200]}")
        if self._regex is not None and not self._regex.search(text):
            return SendResult(ok=False, error=f"gateway refused: {text[:200]}")
        provider_id = json_path(parsed, str(self._id_path)) if self._id_path else None
        return SendResult(ok=True, provider_id=None if provider_id is None else str(provider_id))


# --- SMTP ---------------------------------------------------------------------------------


class SmtpSender:
    """Email through an SMTP server with ``smtplib`` in a thread (one connection per message:
    notifications are few, and a fresh connection never inherits a broken one).

    Options: ``host``, ``port`` (25), ``from`` (required), ``username``/``password``,
    ``starttls`` (false), ``ssl`` (false: implicit TLS, port 465), ``timeout`` (10).
    5xx answers are final; 4xx and connection errors are retried.
    """

    def __init__(self, channel: str, options: Mapping[str, Any], _http: aiohttp.ClientSession):
        self.channel = channel
        try:
            self._host = str(options.get("host", "127.0.0.1"))
            self._port = int(options.get("port", 25))
            self._from = str(options["from"])
            self._username = options.get("username")
            self._password = options.get("password")
            self._starttls = bool(options.get("starttls", False))
            self._ssl = bool(options.get("ssl", False))
            self._timeout = float(options.get("timeout", 10.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise SenderConfigError(f"{channel}: bad smtp options: {exc}") from exc

    def _deliver(self, message: OutgoingMessage) -> str:
        email = EmailMessage()
        email["From"] = self._from
        email["To"] = message.address
        email["Subject"] = message.subject or message.text[:40]
        email["Message-ID"] = make_msgid(idstring=f"notification-{message.id}")
        email.set_content(message.text)
        smtp_class = smtplib.SMTP_SSL if self._ssl else smtplib.SMTP
        with smtp_class(self._host, self._port, timeout=self._timeout) as smtp:
            if self._starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self._username:
                smtp.login(str(self._username), str(self._password or ""))
            smtp.send_message(email)
        return str(email["Message-ID"])

    async def send(self, message: OutgoingMessage) -> SendResult:
        try:
            message_id = await asyncio.to_thread(self._deliver, message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            return SendResult(ok=False, retryable=False, error=f"smtp: recipient refused {codes}")
        except smtplib.SMTPResponseException as exc:
            final = 500 <= exc.smtp_code < 600
            return SendResult(ok=False, retryable=not final, error=f"smtp {exc.smtp_code}"[:300])
        except (smtplib.SMTPException, OSError) as exc:
            return SendResult(ok=False, error=f"smtp: {type(exc).__name__}: {exc}"[:300])
        return SendResult(ok=True, provider_id=message_id[:128])


# --- the registry -------------------------------------------------------------------------

BUILTIN_FACTORIES: Final[dict[str, SenderFactory]] = {
    "http_sms": HttpSmsSender,
    "smtp": SmtpSender,
}


def plugin_factories() -> dict[str, SenderFactory]:
    """Built-ins plus entry points of ``gatewayd.central.senders`` (loaded lazily by name,
    so a broken third-party plugin breaks only the channel that uses it)."""
    factories = dict(BUILTIN_FACTORIES)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in factories:
            factories[ep.name] = _lazy(ep)
    return factories


def _lazy(ep: Any) -> SenderFactory:
    def factory(channel: str, options: Mapping[str, Any], http: aiohttp.ClientSession) -> Sender:
        try:
            loaded: SenderFactory = ep.load()
        except (ImportError, AttributeError) as exc:
            raise SenderConfigError(f"{channel}: sender plugin {ep.name!r}: {exc}") from exc
        return loaded(channel, options, http)

    return factory


class SenderRegistry:
    """The configured sender per channel."""

    def __init__(self, senders: Mapping[str, Sender] | None = None) -> None:
        self._senders = dict(senders or {})

    def add(self, sender: Sender) -> None:
        self._senders[sender.channel] = sender

    def get(self, channel: str) -> Sender | None:
        return self._senders.get(channel)

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._senders)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        http: aiohttp.ClientSession,
        factories: Mapping[str, SenderFactory] | None = None,
    ) -> SenderRegistry:
        """One sender per table of ``config``: ``{channel: {plugin, ...options}}``."""
        known = dict(factories if factories is not None else plugin_factories())
        registry = cls()
        for channel, options in config.items():
            if not isinstance(options, Mapping) or not _NAME.fullmatch(channel):
                raise SenderConfigError(f"senders: [{channel}] must be a table named a_z0_9")
            plugin = str(options.get("plugin", ""))
            if plugin not in known:
                raise SenderConfigError(
                    f"senders: [{channel}] plugin {plugin!r} is not one of {sorted(known)}"
                )
            sender = known[plugin](channel, options, http)
            registry.add(sender)
            log.info("sender_configured", channel=channel, plugin=plugin)
        return registry

    @classmethod
    def from_file(cls, path: str | None, http: aiohttp.ClientSession) -> SenderRegistry:
        """The registry the ``notify_senders`` file describes (empty without a file)."""
        if not path:
            return cls()
        try:
            config = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SenderConfigError(f"senders file {path}: {exc}") from exc
        return cls.from_config(config, http)
