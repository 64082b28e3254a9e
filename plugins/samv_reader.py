"""Second-generation Chinese ID-card readers speaking SAM_V (GA/T 467) on a serial port.

Why it is built this way:

* The module's UART runs at 115200 8N1 unless someone changed it with CMD 60, so at open the
  driver asks for the SAM status at ``baudrate`` first, then at the other rates in the order
  vendor SDKs probe them (115200, 57600, 38400, 19200, 9600); whichever answers with a valid
  frame is kept. Nothing answering at any rate means no reader on that port: offline.
* The reader never reports a card by itself: the driver polls find (20 01) every ``poll_ms``,
  then select (20 02) and read (30 01). A card is read once per stay in the field: after a read
  nothing is reported until a find fails (the card left), whether the reader hides a card it
  has read (most do) or keeps answering find.
* Status words become the codec's named errors: card trouble (select or read failed,
  authentication) is logged and retried at the next poll; a faulty or unauthorised SAM
  (SW3 60/66) is ``DeviceFailed`` (backoff), three unanswered commands in a row
  ``DeviceUnavailable``.
* The token is the ID number (GB 11643 check verified by the codec), method ``id_card``.
  Name, address and photo are personal data: they are never logged, and never published
  unless ``publish_identity = true``, which adds name, sex and birth date to the token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

import serial
import serial_asyncio_fast
from pydantic import Field

from gatewayd.drivers import DeviceSpec, Driver, DriverOptions, RawInput
from gatewayd.errors import DeviceFailed, DeviceUnavailable
from gatewayd.hookspecs import hookimpl
from gatewayd.protocols.samv import (
    FIND_CARD,
    READ_CARD,
    SAM_STATUS,
    SELECT_CARD,
    CardNotFoundError,
    Response,
    ResponseDecoder,
    SamFaultError,
    SamvError,
    SamvFrameError,
    SamvStatusError,
    decode_read,
    status_error,
)
from gatewayd.protocols.samv_tables import BAUD_RATES
from gatewayd.protocols.tokens import Method, Token, TokenKind

READ_CHUNK = 4096
READ_FRAME_BYTES = 1295  # text + photo answer: the longest frame of a 30 01 poll cycle
SHORT_FRAME_BYTES = 24
MAX_MISSES = 3
Baud = Literal[115200, 57600, 38400, 19200, 9600]


class SamvOptions(DriverOptions):
    port: str = Field(min_length=1, description="/dev/ttyUSB0, /dev/serial/by-id/…")
    baudrate: Baud = 115200
    probe: bool = True
    poll_ms: int = Field(default=500, ge=50, le=10_000)
    timeout_ms: int = Field(default=300, ge=20, le=10_000)
    publish_identity: bool = False


def wire_seconds(size: int, baud: int) -> float:
    """Time ``size`` bytes take on an 8N1 line (10 bits per byte)."""
    return size * 10 / baud


class SamvReader(Driver):
    """Polls a SAM_V reader and reports each card's ID number once per stay in the field."""

    name = "samv_reader"
    method = Method.ID_CARD
    options = SamvOptions

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec)
        assert isinstance(spec.options, SamvOptions)
        self.opts: SamvOptions = spec.options
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = ResponseDecoder()
        self._stale = False
        self.baudrate: int | None = None

    async def _open(self) -> None:
        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self.opts.port, baudrate=self.opts.baudrate, limit=READ_CHUNK * 4
            )
        except (serial.SerialException, OSError) as exc:
            raise DeviceUnavailable(f"{self.opts.port}: {exc}") from exc
        try:
            await self._probe()
        except BaseException:
            self.baudrate = None
            await self._close()  # the base closes only sessions whose open succeeded
            raise

    async def _probe(self) -> None:
        rates = [self.opts.baudrate]
        if self.opts.probe:
            rates += [rate for rate in BAUD_RATES if rate != self.opts.baudrate]
        for rate in rates:
            self._set_baud(rate)
            answer = await self._exchange(SAM_STATUS, SHORT_FRAME_BYTES)
            if answer is not None:
                self.log.info("samv_reader_found", baudrate=rate, sam_status=answer.status)
                return
        raise DeviceUnavailable(f"{self.opts.port}: no SAM_V answer at {rates} baud")

    def _set_baud(self, rate: int) -> None:
        assert self._writer is not None
        port: Any = self._writer.transport.get_extra_info("serial")
        if port is not None and port.baudrate != rate:
            port.baudrate = rate
        self.baudrate = rate
        self._decoder = ResponseDecoder()
        self._stale = True

    async def _exchange(self, request: bytes, answer_size: int) -> Response | None:
        """Send one request; its response, or None when none came in time (logged)."""
        assert self._reader is not None and self._writer is not None
        rate = self.baudrate or self.opts.baudrate
        if self._stale:
            await self._discard_input()
        try:
            self._writer.write(request)
            await self._writer.drain()
        except (serial.SerialException, OSError, ConnectionError) as exc:
            raise DeviceUnavailable(f"{self.opts.port}: {exc}") from exc
        timeout = self.opts.timeout_ms / 1000 + 1.5 * wire_seconds(answer_size, rate)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        response = self._decoder.next_item()
                    except SamvFrameError as exc:
                        self.log.warning("samv_bad_frame", reason=str(exc))
                        continue
                    if response is not None:
                        return response
                    self._decoder.feed(await self._chunk())
        except TimeoutError:
            self._stale = True  # a late answer must not pass for the next command's
            return None

    async def _chunk(self) -> bytes:
        assert self._reader is not None
        try:
            chunk = await self._reader.read(READ_CHUNK)
        except (serial.SerialException, OSError) as exc:
            raise DeviceUnavailable(f"{self.opts.port}: {exc}") from exc
        if not chunk:
            raise DeviceUnavailable(f"{self.opts.port}: closed")
        return chunk

    async def _discard_input(self) -> None:
        self._decoder = ResponseDecoder()
        self._stale = False
        with contextlib.suppress(TimeoutError):
            while True:
                await asyncio.wait_for(self._chunk(), 0.02)

    async def _read(self) -> AsyncIterator[RawInput]:
        poll = self.opts.poll_ms / 1000
        card_in_field = False
        misses = 0
        while True:
            found = await self._exchange(FIND_CARD, SHORT_FRAME_BYTES)
            if found is None:
                misses += 1
                if misses >= MAX_MISSES:
                    raise DeviceUnavailable(f"{self.opts.port}: reader stopped answering")
            else:
                misses = 0
                if found.ok:
                    if not card_in_field:
                        raw = await self._read_card()
                        card_in_field = raw is not None
                        if raw is not None:
                            yield raw
                else:
                    card_in_field = False
                    self._check_status(found, "find")
            await self._idle(poll)

    async def _idle(self, seconds: float) -> None:
        """Wait between polls while still reading, so an unplugged port is noticed at once."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    await self._chunk()
                    self._stale = True  # a late answer: dropped before the next command

    def _check_status(self, response: Response, step: str) -> None:
        """Log a failing status by name; a broken SAM ends the session with backoff."""
        error = status_error(response.sw3)
        if isinstance(error, CardNotFoundError):
            return
        if isinstance(error, SamFaultError):
            raise DeviceFailed(f"{step}: {error}") from error
        self.log.warning("id_card_error", step=step, status=response.status, error=str(error))

    async def _read_card(self) -> RawInput | None:
        selected = await self._exchange(SELECT_CARD, SHORT_FRAME_BYTES)
        if selected is None or not selected.ok:
            if selected is not None:
                self._check_status(selected, "select")
            return None
        answer = await self._exchange(READ_CARD, READ_FRAME_BYTES)
        if answer is None:
            self.log.warning("id_card_error", step="read", error="no answer")
            return None
        try:
            card = decode_read(answer).card
        except SamvStatusError:
            self._check_status(answer, "read")
            return None
        except SamvError as exc:
            # Codec messages name the field, never a name or an address.
            self.log.warning("id_card_invalid", reason=str(exc))
            return None
        extra: dict[str, str | int | bool] = {}
        if self.opts.publish_identity:
            extra = {"name": card.name, "sex": card.sex.value, "birth_date": card.birth_date}
        return RawInput(token=Token(kind=TokenKind.ID_NUMBER, value=card.id_number, extra=extra))

    async def _close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


@hookimpl
def gatewayd_driver_classes() -> list[type[Driver]]:
    return [SamvReader]
