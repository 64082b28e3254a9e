"""Serial barcode scanners (CDC-ACM and RS-232), and any device that types codes as lines.

Face and palm payment terminals that hand over their payment code as a serial line reuse
this driver with ``method = "face"`` or ``"palm"`` in their profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Literal

import serial
import serial_asyncio_fast
from pydantic import Field

from gatewayd.drivers import DeviceSpec, Driver, DriverOptions, RawInput
from gatewayd.errors import DeviceUnavailable
from gatewayd.hookspecs import hookimpl
from gatewayd.protocols.framing import LineFramer, Overflow
from gatewayd.protocols.tokens import Method

READ_CHUNK = 4096


class SerialLineOptions(DriverOptions):
    port: str = Field(min_length=1, description="/dev/ttyACM0, /dev/serial/by-id/…")
    baudrate: int = Field(default=9600, gt=0)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: Literal[1, 2] = 1
    terminator: Literal["CR", "LF", "CRLF", "TAB", "any"] = "any"
    flush_timeout_ms: int = Field(default=150, ge=10, le=10_000)
    max_line: int = Field(default=4096, ge=16, le=1_048_576)
    prefix: str = ""
    suffix: str = ""
    encoding: str = "utf-8"
    method: Method = Method.BARCODE


class SerialLineDriver(Driver):
    """Reads CR/LF-framed codes from a serial port; partial codes flush after a timeout."""

    name = "serial_scanner"
    method = Method.BARCODE
    options = SerialLineOptions

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec)
        assert isinstance(spec.options, SerialLineOptions)
        self.opts: SerialLineOptions = spec.options
        self.method = self.opts.method  # type: ignore[misc]
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self.opts.port,
                baudrate=self.opts.baudrate,
                bytesize=self.opts.bytesize,
                parity=self.opts.parity,
                stopbits=self.opts.stopbits,
                limit=READ_CHUNK * 4,
            )
        except (serial.SerialException, OSError) as exc:
            raise DeviceUnavailable(f"{self.opts.port}: {exc}") from exc

    async def _read(self) -> AsyncIterator[RawInput]:
        assert self._reader is not None
        framer = LineFramer(self.opts.terminator, self.opts.max_line)
        timeout = self.opts.flush_timeout_ms / 1000
        while True:
            try:
                if framer.pending:
                    chunk = await asyncio.wait_for(self._reader.read(READ_CHUNK), timeout)
                else:
                    chunk = await self._reader.read(READ_CHUNK)
            except TimeoutError:
                chunk = None
            except (serial.SerialException, OSError) as exc:
                raise DeviceUnavailable(f"{self.opts.port}: {exc}") from exc
            if chunk == b"":
                raise DeviceUnavailable(f"{self.opts.port}: closed")
            now = time.monotonic()
            if chunk:
                framer.feed(chunk, now)
            else:
                framer.flush_if_idle(now, timeout)
            while (item := framer.next_item()) is not None:
                if isinstance(item, Overflow):
                    self.log.warning("line_too_long", discarded=item.discarded)
                    continue
                text = self._decode(item.data)
                if text is not None:
                    yield RawInput(text=text)

    def _decode(self, data: bytes) -> str | None:
        """Bytes to text, or None (logged) for line noise that cannot be a code."""
        try:
            text = data.decode(self.opts.encoding)
        except UnicodeDecodeError:
            self.log.warning("garbage_input", bytes=len(data), reason="not text")
            return None
        if any(ord(c) < 32 and c not in "\t" for c in text):
            self.log.warning("garbage_input", bytes=len(data), reason="control characters")
            return None
        text = text.removeprefix(self.opts.prefix) if self.opts.prefix else text
        text = text.removesuffix(self.opts.suffix) if self.opts.suffix else text
        return text or None

    async def write(self, data: bytes) -> None:
        """Send bytes to the device (init commands, beeps)."""
        if self._writer is None:
            raise DeviceUnavailable(f"{self.opts.port}: not open")
        self._writer.write(data)
        await self._writer.drain()

    async def _close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


@hookimpl
def gatewayd_driver_classes() -> list[type[Driver]]:
    return [SerialLineDriver]
