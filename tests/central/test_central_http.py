"""API hygiene over real sockets: one error shape, limits, OpenAPI, docs, TLS, worker header."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp


async def test_unknown_route_and_wrong_method_use_the_error_shape(central: Any) -> None:
    status, body, resp = await central.call("GET", "/v1/nowhere")
    assert status == 404 and body == {"error": {"code": "not_found", "message": "Not Found"}}
    status, body, resp = await central.call("PUT", "/v1/identify", json={})
    assert status == 405 and body["error"]["code"] == "method_not_allowed"
    assert "POST" in resp.headers["Allow"]
    status, body, _ = await central.call("GET", "/v1/members/abc")
    assert status == 404 and set(body["error"]) == {"code", "message"}
    # Any path at all, a newline or non-ASCII in it included, a static file that is not.
    for path in ("/v1/members/%0A%C3%98/passes", "/", "/dashboard/static/../../app.py"):
        status, body, resp = await central.call("GET", path)
        assert status == 404 and body["error"]["code"] == "not_found", path
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    status, body, _ = await central.call("GET", "/portal/static/nope.js")
    assert (status, body["error"]["code"]) == (404, "not_found")


async def test_bodies_invalid_json_and_too_large(central: Any) -> None:
    for raw in (b"", b"{", b"[1, 2]", b'"text"', b"\xff\xfe"):
        status, body, _ = await central.call(
            "POST", "/v1/identify", "gw-1", data=raw, headers={"Content-Type": "application/json"}
        )
        assert status == 422 and body["error"]["code"] == "invalid_request", raw
    big = json.dumps({"token": "x" * 70_000, "store": "store-1", "terminal": "pos-1"})
    status, body, _ = await central.call(
        "POST", "/v1/identify", "gw-1", data=big, headers={"Content-Type": "application/json"}
    )
    assert (status, body["error"]["code"]) == (413, "payload_too_large")

    async def chunks() -> Any:
        for _ in range(100):
            yield b" " * 1024

    status, body, _ = await central.call("POST", "/v1/identify", "gw-1", data=chunks())
    assert status == 413 and body["error"]["code"] == "payload_too_large"


async def test_missing_fields_are_named(central: Any) -> None:
    status, body, _ = await central.call("POST", "/v1/identify", "gw-1", {"token": "1"})
    assert status == 422
    assert "store: Field required" in body["error"]["message"]
    assert "terminal: Field required" in body["error"]["message"]
    assert {tuple(d["loc"]) for d in body["error"]["details"]} == {("store",), ("terminal",)}


async def test_identify_is_rate_limited_per_terminal(central: Any) -> None:
    member = await central.member()
    code = member["cards"][0]["member_code"]
    limiter = central.services.identify_limit
    limiter.rate, limiter.burst = 0.01, 3.0
    for _ in range(3):
        assert (await central.identify(code))[0] == 200
    status, body = await central.identify(code)
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    status, _ = await central.identify(code, terminal="pos-2")  # another terminal's bucket
    assert status == 200


async def test_openapi_document_and_docs_page(central: Any) -> None:
    async with central.http.get(central.url + "/openapi.json") as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    identify = doc["paths"]["/v1/identify"]["post"]
    assert set(identify["responses"]) >= {"200", "401", "403", "404", "409", "410", "422", "429"}
    assert identify["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/IdentifyRequest"
    }
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    error = doc["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message"}
    async with central.http.get(central.url + "/docs") as resp:
        page = await resp.text()
        assert resp.status == 200 and resp.content_type == "text/html"
    assert "POST /v1/identify" in page and "IdentifyRequest" in page
    assert not re.search(r"(src|href)=['\"]https?://", page)  # no CDN: closed network


async def test_every_response_names_its_worker(central: Any) -> None:
    for path in ("/healthz", "/v1/nowhere", "/v1/stores"):
        async with central.http.get(central.url + path) as resp:
            assert resp.headers["X-Central-Worker"] == str(os.getpid())


async def test_https_with_tls_cert_and_key(tmp_path: Path, central: Any) -> None:
    from gatewayd.central.app import build_app
    from gatewayd.central.server import ssl_context

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    settings = central.services.settings
    from dataclasses import replace

    tls_settings = replace(settings, tls_cert=str(cert), tls_key=str(key))
    server_ctx = ssl_context(tls_settings)
    assert server_ctx is not None
    app = build_app(tls_settings, clock=central.clock)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"https://127.0.0.1:{port}/v1/stores",
                ssl=client_ctx,
                headers={"Authorization": f"Bearer {central.admin_key}"},
            ) as resp,
        ):
            assert resp.status == 200
            assert [s["id"] for s in (await resp.json())["items"]] == ["store-1", "store-2"]
        async with aiohttp.ClientSession() as http:
            try:
                await http.get(f"http://127.0.0.1:{port}/healthz")
                plain_ok = True
            except aiohttp.ClientError:
                plain_ok = False
        assert not plain_ok
    finally:
        await runner.cleanup()


async def test_database_outage_is_503_with_retry_after(central: Any) -> None:
    import sqlalchemy as sa

    async def unreachable() -> list[dict[str, Any]]:
        raise sa.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))

    central.services.registry.list_stores = unreachable
    status, body, resp = await central.call("GET", "/v1/stores")
    assert (status, body["error"]["code"]) == (503, "database_unavailable")
    assert resp.headers["Retry-After"] == "1"
    assert "refused" not in body["error"]["message"]


async def test_unexpected_errors_are_500_in_the_error_shape(central: Any) -> None:
    async def broken() -> list[dict[str, Any]]:
        raise RuntimeError("secret internals")

    central.services.registry.list_stores = broken
    status, body, _ = await central.call("GET", "/v1/stores")
    assert status == 500
    assert body == {"error": {"code": "internal_error", "message": "internal error"}}
