"""The gateway's fleet bookkeeping on disk, and the rollback it makes possible after a crash.

What survives a restart: the last applied serial, the pending-apply marker (with the backup of
every replaced file) and the spool of reports for central. Separate from ``fleet_apply`` because
``gatewayd run`` needs it before the daemon exists (``recover_at_startup`` restores a backup
before anything is loaded), and because it is plain synchronous file work with no asyncio.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gatewayd.config import Settings

log = structlog.get_logger("gatewayd.fleet")


def fleet_dir(settings: Settings) -> Path:
    return settings.gateway.state_dir / "fleet"


def write_atomic(path: Path, data: bytes) -> None:
    """Write a temp file beside ``path``, fsync it, rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- the on-disk state: last serial, marker, report spool ---------------------------------------


@dataclass
class FleetState:
    root: Path

    @property
    def marker_path(self) -> Path:
        return self.root / "pending.json"

    def last_serial(self) -> int:
        try:
            return int((self.root / "serial").read_text().strip())
        except (OSError, ValueError):
            return 0

    def save_serial(self, serial: int) -> None:
        write_atomic(self.root / "serial", str(serial).encode())

    def marker(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.marker_path.read_text())
        except (OSError, ValueError):
            return None
        return data

    def save_marker(self, marker: dict[str, Any]) -> None:
        write_atomic(self.marker_path, json.dumps(marker).encode())

    def clear_marker(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.marker_path.unlink()

    def spool(self, path: str, body: dict[str, Any]) -> None:
        """Queue a report for central; ``FleetAgent.run`` sends it (after a restart too)."""
        item = json.dumps({"path": path, "body": body}).encode()
        write_atomic(self.root / "reports" / f"{time.time_ns()}.json", item)

    def spooled(self) -> list[Path]:
        directory = self.root / "reports"
        return sorted(directory.glob("*.json")) if directory.is_dir() else []


def restore_backup(marker: dict[str, Any]) -> None:
    """Put every file the bundle replaced back; delete the files it created."""
    for entry in reversed(marker["files"]):
        target = Path(entry["target"])
        if entry["backup"] is None:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
        else:
            write_atomic(target, Path(entry["backup"]).read_bytes())


def recover_at_startup(settings: Settings) -> bool:
    """Called by ``gatewayd run`` before the daemon is built. Returns True when it restored a
    backup (the caller then loads the settings again).

    A marker whose restart was expected is the planned restart of a plugin bundle: the watch
    goes on in this process. Any other marker means the gateway died during a watch: roll back.
    """
    state = FleetState(fleet_dir(settings))
    marker = state.marker()
    if marker is None:
        return False
    if marker.get("restart_expected") and time.time() < marker["deadline"]:
        marker["restart_expected"] = False
        state.save_marker(marker)
        log.info("fleet_resume_watch", serial=marker["serial"])
        return False
    restore_backup(marker)
    state.clear_marker()
    if marker.get("restart_expected"):
        reason = "not healthy within the deadline: the planned restart took too long"
    else:
        reason = "the gateway restarted before it was healthy again"
    spool_outcome(state, settings, marker, "rolled_back", "unhealthy", reason)
    log.warning("fleet_rolled_back", serial=marker["serial"], reason=reason)
    return True


def spool_outcome(
    state: FleetState,
    settings: Settings,
    marker: dict[str, Any],
    status: str,
    reason: str | None,
    message: str | None,
) -> None:
    bundle_id = marker.get("bundle_id")
    if bundle_id is None:
        return
    state.spool(
        f"/v1/gateways/{settings.gateway.id}/bundles/{bundle_id}/outcome",
        {
            "status": status,
            "reason": reason,
            "message": message[:2000] if message else None,
            "serial": marker.get("serial"),
        },
    )


def reexec() -> None:
    """Replace this process with a fresh ``gatewayd`` (same pid, same arguments), so new
    plugin files and settings load from scratch; works with and without systemd."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "gatewayd", *sys.argv[1:]])
