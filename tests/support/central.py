"""A real central process (``gatewayd central``) over a seeded SQLite file, for link tests."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]


def seed_demo(workdir: Path, secret: str) -> dict[str, Any]:
    """A demo chain (3 stores, 1 000 members) in ``workdir/central.db``; returns the keys."""
    keys = workdir / "keys.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gatewayd",
            "central",
            "seed",
            "--demo",
            "--db",
            f"sqlite:///{workdir / 'central.db'}",
            "--keys-out",
            str(keys),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "GATEWAYD_CENTRAL_SECRET": secret},
        cwd=ROOT,
        timeout=120,
    )
    data: dict[str, Any] = json.loads(keys.read_text())
    return data


class CentralProcess:
    def __init__(
        self,
        workdir: Path,
        template: Path,
        keys: dict[str, Any],
        secret: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.db = workdir / "central.db"
        shutil.copy(template, self.db)
        self.keys = keys
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "GATEWAYD_CENTRAL_SECRET": secret, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "central.log"

    def start(self) -> CentralProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gatewayd",
                    "central",
                    "--db",
                    f"sqlite:///{self.db}",
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--identify-rate",
                    "100000",
                    "--identify-burst",
                    "100000",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=ROOT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"central exited:\n{self.log_path.read_text()}")
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"central not up:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {self.keys['admin_key']}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def recorded(self, event_ids: list[str] | None = None) -> dict[str, int]:
        """event_id → how many identification rows central holds for it."""
        with sqlite3.connect(self.db) as db:
            rows = db.execute(
                "SELECT event_id, COUNT(*) FROM identifications WHERE event_id IS NOT NULL "
                "GROUP BY event_id"
            ).fetchall()
        counts = {r[0]: r[1] for r in rows}
        if event_ids is not None:
            return {e: counts.get(e, 0) for e in event_ids}
        return counts


def new_secret() -> str:
    return secrets.token_hex(32)
