"""Test and benchmark helpers: a throwaway PostgreSQL cluster and fake payment providers.

Like ``structlog.testing``, these ship with the package so that the tests and
``benchmarks/central.py`` (and a field engineer reproducing a bug) use the same tools.
"""

from __future__ import annotations

import glob
import hmac
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from .payments import alipay_sign, from_xml, to_xml, wechat_sign


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's bin folder (``/usr/lib/postgresql/*/bin``)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    if found:
        return Path(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise FileNotFoundError("no PostgreSQL binaries (initdb, pg_ctl) found")


class ThrowawayPostgres:
    """A private PostgreSQL cluster in a temporary folder on a free port.

    As root, PostgreSQL refuses to run, so the folder is handed to the ``postgres`` user and
    ``initdb``/``pg_ctl`` run through ``runuser``. Durability is switched off (fsync,
    synchronous_commit): the cluster lives for one test session or one benchmark.
    """

    def __init__(self, *, max_connections: int = 200) -> None:
        self.bindir = postgres_bindir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="central-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.logfile = self.root / "postgres.log"
        self.max_connections = max_connections
        self._as_root = os.geteuid() == 0
        self._running = False

    def _cmd(self, *args: str) -> list[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        return ["runuser", "-u", "postgres", "--", *command] if self._as_root else command

    def start(self) -> None:
        self.sockets.mkdir()
        os.chmod(self.root, 0o755)
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        subprocess.run(
            self._cmd(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ),
            check=True,
            capture_output=True,
        )
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            f"-c max_connections={self.max_connections}"
        )
        subprocess.run(
            self._cmd(
                "pg_ctl",
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "60",
                "start",
            ),
            check=True,
            capture_output=True,
        )
        self._running = True

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL statement through psql (e.g. CREATE DATABASE)."""
        result = subprocess.run(
            self._cmd(
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database (optionally copied from ``template``); returns its URL."""
        suffix = f" TEMPLATE {template}" if template else ""
        self.psql(f'CREATE DATABASE "{name}"{suffix}')
        return self.url(name)

    def stop(self) -> None:
        if self._running:
            subprocess.run(
                self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                check=False,
                capture_output=True,
            )
            self._running = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@dataclass
class FakeWeChatPay:
    """A local WeChat Pay v2 ``tools/authcodetoopenid`` speaking the real XML format.

    It checks the request's fields and MD5 signature, answers with a signed XML document,
    and records every request it accepted.
    """

    appid: str = "wx-test-appid"
    mch_id: str = "1900000109"
    api_key: str = "k" * 32
    openids: dict[str, str] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)
    requests: list[dict[str, str]] = field(default_factory=list)

    def _answer(self, fields: dict[str, str]) -> web.Response:
        fields = {"appid": self.appid, "mch_id": self.mch_id, "nonce_str": "fake", **fields}
        fields["sign"] = wechat_sign(fields, self.api_key)
        return web.Response(body=to_xml(fields), content_type="text/xml")

    async def handle(self, request: web.Request) -> web.Response:
        try:
            params = from_xml(await request.read())
        except (ValueError, SyntaxError):
            return self._answer({"return_code": "FAIL", "return_msg": "XML parse error"})
        required = {"appid", "mch_id", "auth_code", "nonce_str", "sign"}
        if not required <= set(params):
            return self._answer({"return_code": "FAIL", "return_msg": "missing fields"})
        if not hmac.compare_digest(params["sign"], wechat_sign(params, self.api_key)):
            return self._answer({"return_code": "FAIL", "return_msg": "SIGNERROR"})
        if params["appid"] != self.appid or params["mch_id"] != self.mch_id:
            return self._answer({"return_code": "FAIL", "return_msg": "appid/mch_id mismatch"})
        self.requests.append(params)
        code = params["auth_code"]
        base = {"return_code": "SUCCESS", "return_msg": "OK"}
        if code in self.expired:
            return self._answer({**base, "result_code": "FAIL", "err_code": "AUTHCODEEXPIRE"})
        if code not in self.openids:
            return self._answer({**base, "result_code": "FAIL", "err_code": "AUTH_CODE_INVALID"})
        return self._answer({**base, "result_code": "SUCCESS", "openid": self.openids[code]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/tools/authcodetoopenid", self.handle)
        return app


@dataclass
class FakeAlipayBridge:
    """The JSON bridge ``AlipayAdapter`` documents, with its HMAC signature checked."""

    app_id: str = "2021000000000000"
    key: str = "alipay-bridge-key"
    users: dict[str, str] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)

    async def handle(self, request: web.Request) -> web.Response:
        params = await request.json()
        sign = params.get("sign", "")
        if not hmac.compare_digest(sign, alipay_sign(params, self.key)):
            return web.json_response({"code": "40002", "sub_code": "isv.invalid-signature"})
        code = params.get("auth_code", "")
        if code in self.expired:
            return web.json_response({"code": "40004", "sub_code": "ACQ.AUTH_CODE_EXPIRED"})
        if code not in self.users:
            return web.json_response({"code": "40004", "sub_code": "ACQ.AUTH_CODE_INVALID"})
        return web.json_response({"code": "10000", "user_id": self.users[code]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/auth-code/user", self.handle)
        return app


async def start_app(app: web.Application, host: str = "127.0.0.1") -> tuple[web.AppRunner, str]:
    """Serve ``app`` on a free port; returns the runner (clean it up) and the base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = _bound_port(runner)
    return runner, f"http://{host}:{port}"


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the runner is not bound to a TCP port")


def wait_for_port(host: str, port: int, timeout: float = 20.0) -> None:
    """Block until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")


def dump_json(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
