"""Caller-ID modems (voice modems on a serial or CDC-ACM port), NCID style.

Why it is built this way:

* Initialisation is a list of fallbacks, re-sent on every (re)open and every
  ``reinit_minutes`` while the line is idle, because Conexant USB modems forget ``+VCID``
  after a reset even when it was saved (home-assistant/core#57765): the profile's ``init``
  commands (``ATZ``, ``AT E1 V1 Q0``), then its ``country`` (``AT+GCI=B5`` for China: some
  modems print no caller ID without it), then the ``caller_id`` commands in order until one
  answers OK (``AT+VCID=1``, else ``AT#CID=1`` on USR/Rockwell chipsets).
* ``format`` picks the decoder: ``text`` (the modem's formatted ``NMBR = …`` lines, tolerant
  parsing), ``fsk`` (unformatted mode: each SDMF/MDMF packet as a line of hex) or ``dtmf``
  (China's DTMF caller ID before the first ring, reported DLE-shielded in voice mode).
* A call is emitted as soon as its number is known, never waiting for a NAME (many Chinese
  lines send none), with ``rings`` = the rings counted so far, so the POS shows the member
  before anyone picks up.
* Remote password entry: the ``collect-password`` action takes the line off hook with the
  profile's ``voice_commands``, collects keypad digits (DLE-shielded) until ``#``, then hangs
  up with ``hangup_commands`` and re-enables caller ID. The digits go out once, in the token
  of a ``phone`` event (``purpose = "password_entry"``) for this device's terminal; central
  verifies them. This module never logs them (not even their count).

One pump task reads the port and routes bytes to the decoders and command replies, so
commands (init, re-init, voice mode) can be awaited from anywhere while reading goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import serial
import serial_asyncio_fast
from pydantic import Field

from gatewayd.drivers import DeviceSpec, Driver, DriverOptions, RawInput
from gatewayd.errors import DeviceFailed, DeviceUnavailable, GatewayError, UnsupportedAction
from gatewayd.hookspecs import hookimpl
from gatewayd.protocols.callerid import (
    Call,
    CallerIdError,
    FskDecoder,
    ModemDecoder,
    ModemReply,
    Ring,
)
from gatewayd.protocols.callerid_dtmf import DLE, DTMF_DIGITS, DtmfCollector, DtmfDecoder
from gatewayd.protocols.tokens import Method, Token, TokenKind, classify

READ_CHUNK = 4096
MAX_LINE = 256
_HEX_LINE = re.compile(rb"(?:[0-9A-Fa-f]{2}){4,}")


class CallerIdOptions(DriverOptions):
    port: str = Field(min_length=1, description="/dev/ttyACM0, /dev/serial/by-id/…")
    baudrate: int = Field(default=115200, gt=0)
    format: Literal["text", "fsk", "dtmf"] = "text"
    init: tuple[str, ...] = ("ATZ", "AT E1 V1 Q0")
    country: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{2}$")
    caller_id: tuple[str, ...] = Field(default=("AT+VCID=1", "AT#CID=1"), min_length=1)
    command_timeout_ms: int = Field(default=2000, ge=50, le=30_000)
    wait_for_name: bool = False
    ring_gap_s: float = Field(default=8.0, gt=0)
    reinit_minutes: float = Field(default=10.0, ge=0)
    voice_commands: tuple[str, ...] = ("AT+FCLASS=8", "AT+VLS=1")
    hangup_commands: tuple[str, ...] = ("AT+VLS=0", "ATH0", "AT+FCLASS=0")
    password_timeout_s: float = Field(default=30.0, gt=0, le=600)
    password_max_digits: int = Field(default=16, ge=1, le=64)
    call_window_s: float = Field(default=300.0, gt=0)


class ModemTimeout(GatewayError):
    """The modem gave no final result code in time."""


class CallerIdModem(Driver):
    """A voice modem: caller-ID numbers in, ``phone`` events (method ``caller_id``) out."""

    name = "callerid_modem"
    method = Method.CALLER_ID
    options = CallerIdOptions

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec)
        assert isinstance(spec.options, CallerIdOptions)
        self.opts: CallerIdOptions = spec.options
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._inputs: asyncio.Queue[RawInput | BaseException] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._command_lock = asyncio.Lock()
        self._reply: asyncio.Future[str] | None = None
        self._collector: DtmfCollector | None = None
        self._password: asyncio.Future[str] | None = None
        self._last_call: tuple[str, float] | None = None
        self._rings = 0
        self._last_ring = -1e9

    # -- session ---------------------------------------------------------------------------

    async def _open(self) -> None:
        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self.opts.port, baudrate=self.opts.baudrate, limit=READ_CHUNK * 4
            )
        except (serial.SerialException, OSError) as exc:
            raise DeviceUnavailable(f"{self.opts.port}: {exc}") from exc
        self._inputs = asyncio.Queue()
        self._modem = ModemDecoder(
            wait_for_name=self.opts.wait_for_name, ring_gap=self.opts.ring_gap_s
        )
        self._fsk = FskDecoder()
        self._dtmf = DtmfDecoder()
        self._line = bytearray()
        self._after_dle = False
        self._spawn(self._pump(self._reader))
        try:
            await self._initialise()
        except BaseException as exc:
            await self._close()  # the base closes only sessions whose open succeeded
            if isinstance(exc, ModemTimeout):
                raise DeviceUnavailable(f"{self.opts.port}: {exc}") from exc
            raise
        if self.opts.reinit_minutes:
            self._spawn(self._maintain())

    async def _initialise(self) -> None:
        """Init commands, country, then the first caller-ID command the modem accepts."""
        for command in self.opts.init:
            reply = await self._command(command)
            if reply != "OK":
                self.log.warning("modem_command_refused", command=command, reply=reply)
        if self.opts.country:
            command = f"AT+GCI={self.opts.country.upper()}"
            reply = await self._command(command)
            if reply != "OK":
                self.log.warning("modem_command_refused", command=command, reply=reply)
        for command in self.opts.caller_id:
            reply = await self._command(command)
            if reply == "OK":
                self.log.info("caller_id_enabled", command=command, format=self.opts.format)
                return
            self.log.info("caller_id_command_refused", command=command, reply=reply)
        raise DeviceFailed(f"modem refused every caller-ID command {list(self.opts.caller_id)}")

    async def _command(self, command: str) -> str:
        """Send one AT command; its final result code (``OK``, ``ERROR``…)."""
        async with self._command_lock:
            writer = self._writer
            if writer is None:
                raise DeviceUnavailable(f"{self.opts.port}: not open")
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._reply = future
            try:
                writer.write(command.encode("ascii") + b"\r")
                await writer.drain()
            except (serial.SerialException, OSError, ConnectionError) as exc:
                raise DeviceUnavailable(f"{self.opts.port}: {exc}") from exc
            try:
                return await asyncio.wait_for(future, self.opts.command_timeout_ms / 1000)
            except TimeoutError:
                raise ModemTimeout(f"no answer to {command}") from None
            finally:
                self._reply = None

    async def _maintain(self) -> None:
        """Re-enable caller ID now and then while idle: a modem reset loses it silently."""
        while True:
            await asyncio.sleep(self.opts.reinit_minutes * 60)
            if self._collector is not None or self._ringing(time.monotonic()):
                continue
            try:
                await self._initialise()
            except ModemTimeout as exc:
                self._inputs.put_nowait(DeviceUnavailable(f"re-init: {exc}"))
                return
            except GatewayError as exc:
                self._inputs.put_nowait(exc)
                return

    async def _read(self) -> AsyncIterator[RawInput]:
        while True:
            item = await self._inputs.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    async def _close(self) -> None:
        tasks, self._tasks = list(self._tasks), set()  # done callbacks edit the old set
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._collector = None
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro, name=f"{self.spec.id}:{coro.__name__}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the pump: bytes → decoders ----------------------------------------------------------

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                try:
                    chunk = await reader.read(READ_CHUNK)
                except (serial.SerialException, OSError) as exc:
                    raise DeviceUnavailable(f"{self.opts.port}: {exc}") from exc
                if not chunk:
                    raise DeviceUnavailable(f"{self.opts.port}: closed")
                self._bytes(chunk, time.monotonic())
        except DeviceUnavailable as exc:
            if self._reply is not None and not self._reply.done():
                self._reply.set_exception(exc)
            self._inputs.put_nowait(exc)

    def _voice(self) -> bool:
        return self.opts.format == "dtmf" or self._collector is not None

    def _bytes(self, chunk: bytes, now: float) -> None:
        """Split DLE codes (in voice mode) from text, and text into lines."""
        voice = self._voice()
        for byte in chunk:
            if self._after_dle:
                self._after_dle = False
                if byte != DLE:  # DLE DLE is a literal 0x10 of audio: nothing to report
                    self._dle_code(chr(byte), now)
            elif byte == DLE and voice:
                self._after_dle = True
            elif byte in b"\r\n":
                self._end_line(now)
            elif len(self._line) < MAX_LINE:
                self._line.append(byte)

    def _end_line(self, now: float) -> None:
        line, self._line = bytes(self._line), bytearray()
        if not line.strip():
            return
        if self.opts.format == "fsk" and _HEX_LINE.fullmatch(line.strip()):
            self._fsk.feed(bytes.fromhex(line.strip().decode()))
            self._drain(self._fsk, now)
            return
        self._modem.feed(line + b"\r\n", now)
        self._drain(self._modem, now)

    def _dle_code(self, code: str, now: float) -> None:
        if code == "R":
            self._ring(now)
        elif code in DTMF_DIGITS:
            if self._collector is not None:
                self._password_digit(code)
            elif self.opts.format == "dtmf":
                self._dtmf.feed(code)
                self._drain(self._dtmf, now)

    def _drain(self, decoder: ModemDecoder | FskDecoder | DtmfDecoder, now: float) -> None:
        while True:
            try:
                item = decoder.next_item()
            except CallerIdError as exc:
                self.log.warning("caller_id_undecodable", reason=str(exc))
                continue
            if item is None:
                return
            if isinstance(item, Ring):
                self._ring(now, item.count)
            elif isinstance(item, Call):
                rings = item.rings if decoder is self._modem else self._rings_now(now)
                self._call(item, rings, now)
            elif isinstance(item, ModemReply) and self._reply and not self._reply.done():
                self._reply.set_result(item.text)

    def _ring(self, now: float, count: int | None = None) -> None:
        if count is None:
            count = self._rings_now(now) + 1
        self._rings, self._last_ring = count, now

    def _ringing(self, now: float) -> bool:
        return now - self._last_ring <= self.opts.ring_gap_s

    def _rings_now(self, now: float) -> int:
        return self._rings if self._ringing(now) else 0

    def _call(self, call: Call, rings: int, now: float) -> None:
        if call.number is None:
            reason = call.reason.value if call.reason else "no number"
            self.log.info("call_without_number", reason=reason, rings=rings)
            return
        self._last_call = (call.number, now)
        self._inputs.put_nowait(RawInput(text=call.number, extra={"rings": rings}))

    # -- remote password entry ---------------------------------------------------------------

    async def perform(self, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """``collect-password``: answer the current call and collect keypad digits until ``#``.

        Returns once the modem is in voice mode; the digits arrive later as an event.
        ``params.terminal``, when given, must be this device's terminal (the one the call was
        shown on).
        """
        if action != "collect-password":
            raise UnsupportedAction(f"driver {self.name!r} has no action {action!r}")
        terminal = params.get("terminal")
        if terminal is not None and terminal != self.spec.terminal:
            raise GatewayError(f"calls on {self.spec.id} are shown on {self.spec.terminal}")
        if self._writer is None:
            raise DeviceUnavailable(f"{self.spec.id} is {self.state.value}")
        number = self._recent_number()
        if self._collector is not None:
            raise GatewayError("a password is already being collected")
        self._collector = DtmfCollector(max_digits=self.opts.password_max_digits)
        self._password = asyncio.get_running_loop().create_future()
        try:
            for command in self.opts.voice_commands:
                reply = await self._command(command)
                if reply != "OK":
                    raise DeviceFailed(f"modem answered {reply} to {command}")
        except BaseException:
            await self._hang_up()
            raise
        self.log.info("password_entry_started")
        self._spawn(self._await_password(number))
        return {"collecting": True, "timeout_s": self.opts.password_timeout_s, "submit": "#"}

    def _recent_number(self) -> str:
        last = self._last_call
        if last is None or time.monotonic() - last[1] > self.opts.call_window_s:
            raise GatewayError("no recent call with a number to collect a password for")
        return last[0]

    def _password_digit(self, digit: str) -> None:
        assert self._collector is not None
        try:
            password = self._collector.push(digit)
        except CallerIdError:
            self.log.warning("password_entry_too_long")  # the collector started over
            return
        if password is not None and self._password is not None and not self._password.done():
            self._password.set_result(password)

    async def _await_password(self, number: str) -> None:
        assert self._password is not None
        try:
            password = await asyncio.wait_for(self._password, self.opts.password_timeout_s)
        except TimeoutError:
            self.log.warning("password_entry_timeout")
            password = None
        finally:
            await self._hang_up()
        if not password:
            return
        phone = classify(number, Method.CALLER_ID)
        token = Token(
            kind=TokenKind.PHONE,
            value=phone.value if phone.kind is TokenKind.PHONE else number,
            extra={**phone.extra, "password": password, "purpose": "password_entry"},
        )
        self.log.info("password_entry_collected")
        self._inputs.put_nowait(RawInput(token=token))

    async def _hang_up(self) -> None:
        """Back on hook and into caller-ID mode; failures are logged (the next re-init heals)."""
        try:
            for command in self.opts.hangup_commands:
                reply = await self._command(command)
                if reply != "OK":
                    self.log.warning("modem_command_refused", command=command, reply=reply)
            self._collector = None
            await self._initialise()
        except (GatewayError, OSError) as exc:
            self.log.warning("hang_up_failed", error=str(exc))
        finally:
            self._collector = None
            self._password = None


@hookimpl
def gatewayd_driver_classes() -> list[type[Driver]]:
    return [CallerIdModem]
