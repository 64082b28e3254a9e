"""A real gatewayd process (``python -m gatewayd run``) with its config written by the test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(
    path: Path,
    *,
    mqtt_url: str,
    devices: list[dict[str, Any]],
    http_port: int | None = None,
    extra: dict[str, dict[str, Any]] | None = None,
    top: dict[str, Any] | None = None,
    gateway_id: str = "gw1",
    store: str = "s1",
) -> Path:
    sections: dict[str, dict[str, Any]] = {
        "gateway": {"id": gateway_id, "store": store, "state_dir": str(path.parent / "state")},
        "mqtt": {"url": mqtt_url, "health_interval": 30},
        "http": {"listen": f"127.0.0.1:{http_port or free_port()}"},
    }
    for name, values in (extra or {}).items():
        sections.setdefault(name, {}).update(values)
    lines = [f"{k} = {toml_value(v)}" for k, v in (top or {}).items()]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
    for device in devices:
        lines.append("[[devices]]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in device.items())
    path.write_text("\n".join(lines) + "\n")
    return path


class GatewayProcess:
    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_path = config.parent / f"gatewayd-{int(time.time() * 1000)}.log"
        self.process: subprocess.Popen[bytes] | None = None
        import tomllib

        listen = tomllib.loads(config.read_text())["http"]["listen"]
        self.http_port = int(listen.rpartition(":")[2])
        self.base_url = f"http://127.0.0.1:{self.http_port}"

    def start(self, wait: bool = True) -> GatewayProcess:
        self.log_handle = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop/kill
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gatewayd", "run", "--config", str(self.config)],
            stdout=self.log_handle,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=ROOT,
        )
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gatewayd exited {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"gatewayd not healthy after {timeout}s:\n{self.log()}")

    def status(self, token: str | None = None) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.base_url}/v1/status")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=2) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def stop(self, timeout: float = 8.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._close_log()
        return code

    def _close_log(self) -> None:
        handle = getattr(self, "log_handle", None)
        if handle is not None and not handle.closed:
            handle.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out
