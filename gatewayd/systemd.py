"""systemd's notify protocol: READY, WATCHDOG, STOPPING over ``$NOTIFY_SOCKET``.

A no-op outside systemd. Datagrams to an abstract or filesystem socket, as sd_notify(3) says.
"""

from __future__ import annotations

import os
import socket


class Notify:
    def __init__(self) -> None:
        self.address = os.environ.get("NOTIFY_SOCKET")

    def send(self, message: str) -> bool:
        if not self.address:
            return False
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall(message.encode())
        except OSError:
            return False
        return True

    def watchdog_interval(self) -> float | None:
        """Half of ``WatchdogSec``, when systemd asked for pings (``$WATCHDOG_USEC``)."""
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec.isdigit() or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2_000_000
