"""A virtual MIFARE Classic 1K card speaking the vpcd socket protocol.

vpcd (Debian's vsmartcard-vpcd) is a pcscd reader driver that listens on 127.0.0.1:35963
(reader "Virtual PCD 00 00") and 35964 ("… 00 01"). A card *connects* to it: connected =
inserted, socket closed = removed. Every message is a 2-byte big-endian length and a payload; a
1-byte payload is a control message (00 power off, 01 power on, 02 reset: no reply, 04 send
the ATR), anything else is a C-APDU answered with an R-APDU. Debian's own ``vicc`` cannot
answer the reader pseudo-APDUs (FF CA, FF 82, FF 86, FF B0), hence this card. Used by
``gatewayd simulate card``, the demo and the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import struct
import sys
import threading
import time

VPCD_PORTS = (35963, 35964)
VPCD_READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")
# PC/SC part 3 storage card, ISO 14443A-3, MIFARE Classic 1K.
MIFARE_1K_ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")
OK, AUTH_FAILED, NOT_AUTHENTICATED, UNSUPPORTED = b"\x90\x00", b"\x63\x00", b"\x69\x82", b"\x6a\x81"


class VirtualCard:
    """A card on a vpcd reader. ``remove_on``: APDU prefix at which the card is "pulled away"."""

    def __init__(
        self,
        uid: bytes = bytes.fromhex("04A1B2C3"),
        blocks: dict[int, bytes] | None = None,
        keys: dict[int, tuple[bytes, bytes]] | None = None,
        remove_on: bytes | None = None,
    ) -> None:
        self.uid, self.blocks, self.keys, self.remove_on = uid, blocks or {}, keys or {}, remove_on
        self.apdus: list[bytes] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loaded: dict[int, bytes] = {}
        self._authenticated: int | None = None  # the sector last authenticated

    def insert(self, reader: int = 0, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:  # vpcd listens only once pcscd has loaded it: retry while it starts
            try:
                sock = socket.create_connection(("127.0.0.1", VPCD_PORTS[reader]), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        self._thread.start()

    def remove(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError, EOFError):
            while True:
                (length,) = struct.unpack(">H", _recv_exact(sock, 2))
                apdu = _recv_exact(sock, length)
                if self.remove_on is not None and apdu.startswith(self.remove_on):
                    sock.close()  # the card leaves the field before answering
                    return
                reply = self.respond(apdu)
                if reply is not None:
                    sock.sendall(struct.pack(">H", len(reply)) + reply)

    def respond(self, apdu: bytes) -> bytes | None:
        if len(apdu) == 1:  # control: power off/on and reset forget authentication
            self._authenticated = None
            return MIFARE_1K_ATR if apdu[0] == 4 else None
        self.apdus.append(apdu)
        if len(apdu) < 4:
            return b"\x67\x00"  # wrong length
        cla_ins, p1, p2 = apdu[:2], apdu[2], apdu[3]
        if cla_ins == b"\xff\xca":
            return self.uid + OK if p1 == 0 else UNSUPPORTED
        if cla_ins == b"\xff\x82" and len(apdu) == 11 and p2 in (0, 1):
            self._loaded[p2] = apdu[5:11]
            return OK
        if cla_ins == b"\xff\x86" and len(apdu) == 10:
            block, key_type, slot = apdu[7], apdu[8], apdu[9]
            key_a, key_b = self.keys.get(block // 4, (b"\xff" * 6, b"\xff" * 6))
            wanted = key_a if key_type == 0x60 else key_b
            ok = self._loaded.get(slot) == wanted
            self._authenticated = block // 4 if ok else None
            return OK if ok else AUTH_FAILED
        if cla_ins == b"\xff\xb0":
            if self._authenticated != p2 // 4:
                return NOT_AUTHENTICATED
            return self.blocks.get(p2, bytes(16)) + OK
        return UNSUPPORTED


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        # vpcd writes length and payload separately: ack at once so that Nagle does not
        # hold its second write back for a delayed-ACK period (~40 ms per exchange).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        data += chunk
    return data


def parse_blocks(specs: list[str]) -> dict[int, bytes]:
    """``["4=3130…"]`` → ``{4: b"10…"}``; each block is 16 bytes (shorter is zero-padded)."""
    blocks: dict[int, bytes] = {}
    for spec in specs:
        number, sep, data = spec.partition("=")
        if not sep or not number.strip().isdigit():
            raise ValueError(f"--block {spec!r}: expected N=HEX")
        raw = bytes.fromhex(data)
        if len(raw) > 16:
            raise ValueError(f"--block {spec!r}: a block holds 16 bytes")
        blocks[int(number)] = raw.ljust(16, b"\x00")
    return blocks


def run_card_simulator(args: argparse.Namespace) -> int:
    """``gatewayd simulate card``: insert the card, hold it, remove it; repeat."""
    try:
        uid = bytes.fromhex(args.uid or "04A1B2C3")
        blocks = parse_blocks(args.block)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    card = VirtualCard(uid=uid, blocks=blocks)
    reader = VPCD_READERS[args.reader]
    cycle = 0
    while args.repeat == 0 or cycle < args.repeat:
        try:
            card.insert(args.reader, timeout=5)
        except OSError:
            print(
                f"error: vpcd is not listening on 127.0.0.1:{VPCD_PORTS[args.reader]}: "
                "is pcscd running with the vsmartcard-vpcd driver?",
                file=sys.stderr,
            )
            return 1
        print(f"card {uid.hex().upper()} on {reader}", flush=True)
        time.sleep(args.hold)
        card.remove()
        print(f"card {uid.hex().upper()} removed", flush=True)
        cycle += 1
        if args.repeat == 0 or cycle < args.repeat:
            time.sleep(args.interval)
    return 0
