"""``gatewayd watch``: identify events and device states, live, for whoever debugs a store.

Subscribes over MQTT (default) or the gateway's SSE stream (``--http``). Token values are
masked in the table; ``--json`` prints the payloads unchanged for machines.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
import aiomqtt

from gatewayd.protocols.tokens import mask

COLUMNS = ("time", "store", "terminal", "device", "method", "kind", "token", "phase", "member")
WIDTHS = (12, 10, 10, 14, 9, 21, 22, 10, 16)


def format_row(values: tuple[str, ...]) -> str:
    return "  ".join(v[:w].ljust(w) for v, w in zip(values, WIDTHS, strict=True)).rstrip()


def format_event(kind: str, payload: dict[str, Any]) -> str:
    """One readable table row for an identify event or a device state."""
    if kind == "identify":
        token = payload.get("token") or {}
        member = payload.get("member") or {}
        return format_row(
            (
                str(payload.get("ts", ""))[11:23],
                str(payload.get("store", "")),
                str(payload.get("terminal", "")),
                str(payload.get("device", "")),
                str(payload.get("method", "")),
                str(token.get("kind", "")),
                mask(str(token.get("value", ""))),
                str(payload.get("phase", "")),
                str(member.get("name", "")),
            )
        )
    if kind == "device":
        error = payload.get("last_error") or ""
        return (
            f"{str(payload.get('ts', ''))[11:23]:<12}  device {payload.get('device')} "
            f"is {payload.get('state')} ({payload.get('driver')}) {error}".rstrip()
        )
    if kind == "status":
        return (
            f"{'':<12}  gateway {payload.get('gateway', '?')}: {payload.get('state')} "
            f"(epoch {payload.get('epoch')})"
        )
    return json.dumps(payload, ensure_ascii=False)


async def _mqtt_items(args: argparse.Namespace) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    url, store, prefix = args.mqtt, args.store or "+", "gatewayd/v1"
    username = password = None
    if args.config:
        from gatewayd.config import load_settings

        settings = load_settings(args.config)
        store = args.store or settings.gateway.store
        prefix = settings.mqtt.topic_prefix
        username, password = settings.mqtt.username, settings.mqtt.password
        if url is None:
            url = (
                settings.mqtt.url
                if not settings.mqtt.embedded
                else f"mqtt://{settings.mqtt.embedded_listen}"
            )
    parts = urlsplit(url or "mqtt://127.0.0.1:1883")
    terminal = args.terminal or "+"
    async with aiomqtt.Client(
        parts.hostname or "127.0.0.1", parts.port or 1883, username=username, password=password
    ) as client:
        await client.subscribe(f"{prefix}/{store}/terminals/{terminal}/identify", qos=1)
        await client.subscribe(f"{prefix}/{store}/gateways/+/devices/+", qos=1)
        await client.subscribe(f"{prefix}/{store}/gateways/+/status", qos=1)
        async for message in client.messages:
            try:
                payload = json.loads(bytes(message.payload))
            except (ValueError, TypeError):
                continue
            topic = message.topic.value
            if topic.endswith("/identify"):
                yield "identify", payload
            elif topic.endswith("/status"):
                yield "status", {**payload, "gateway": topic.split("/")[-2]}
            else:
                yield "device", payload


async def _sse_items(args: argparse.Namespace) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    params = {"terminal": args.terminal} if args.terminal else {}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(
            args.http.rstrip("/") + "/v1/events", headers=headers, params=params
        ) as response,
    ):
        if response.status != 200:
            raise SystemExit(f"error: {response.status} from {args.http}")
        event, data = "message", ""
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
            elif not line and data:
                yield event, json.loads(data)
                event, data = "message", ""


async def watch(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    items = _sse_items(args) if args.http else _mqtt_items(args)
    if not args.json:
        print(format_row(COLUMNS), file=out, flush=True)
    seen = 0
    async for kind, payload in items:
        if args.json:
            print(json.dumps({"type": kind, **payload}, ensure_ascii=False), file=out, flush=True)
        else:
            print(format_event(kind, payload), file=out, flush=True)
        if kind == "identify":
            seen += 1
            if args.count and seen >= args.count:
                break
    return 0
