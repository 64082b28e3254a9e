"""USB devices that are neither keyboard wedges nor serial ports, through pyusb (libusb).

* ``usb_samv``: the USB SAM_V (GA/T 467) ID-card reader. A request goes out as two bulk
  transfers (preamble+length on 0x02, body on 0x06), the answer comes back on 0x81 (its first
  7 bytes) and 0x85 (the rest). Those pipes come from one vendor note only, so all four are
  options; a reader with one bulk pair gives the same address twice and is read as a stream.
* ``usb_callerid``: a USB HID caller-ID box. No box's report format is published, so the
  framing is configurable and decoded by the modem codecs (see ``UsbHidCallerIdOptions``).

Why it is built this way:

* Every pyusb call blocks, so each session owns one worker thread making all of them in order.
  A read waits at most ``SLICE_MS`` before looking at the stop flag: ``stop()`` stays prompt.
* ``usb = "vvvv:pppp"`` (plus ``serial_number``) or a node path such as the udev rules'
  ``/dev/gatewayd/<profile-id>`` names the device. Absent or gone (``ENODEV``, or any transfer
  error after which it is off the bus) is ``DeviceUnavailable``; what a quick reopen will not
  cure (permissions, a busy interface, a missing endpoint, a silent reader, a faulty SAM) is
  ``DeviceFailed``, with backoff.
* ``BACKEND`` goes to ``usb.core.find``: None lets pyusb pick libusb; tests put a fake
  ``usb.backend.IBackend`` there, so this very code runs against emulated devices.
* An ID card is read and reported once until it leaves the field (``absent_polls`` finds
  without it), and not again after a replug if it never left. The token is the ID number;
  name, sex and birth date join it only with ``publish_identity`` (as on the serial
  ``samv_reader``), address and photo never, and none of it is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from typing import Any, Final, Literal, TypeVar, cast

import usb.core
import usb.util
from pydantic import Field, field_validator

from gatewayd.drivers import DeviceSpec, Driver, DriverOptions, RawInput
from gatewayd.errors import DeviceFailed, DeviceUnavailable, GatewayError
from gatewayd.hookspecs import hookimpl
from gatewayd.protocols import samv
from gatewayd.protocols.callerid import (
    Call,
    CallerIdError,
    FskDecoder,
    MessageWaiting,
    ModemDecoder,
    ModemReply,
    Ring,
)
from gatewayd.protocols.callerid_dtmf import DtmfDecoder
from gatewayd.protocols.samv import IdCard, Response
from gatewayd.protocols.tokens import Method, Token, TokenKind

T = TypeVar("T")

BACKEND: Any = None  # pyusb backend for usb.core.find; None = libusb (tests plug a fake in)
SLICE_MS: Final = 200  # longest blocking read before the stop flag is looked at
CLOSE_WAIT: Final = 2.0
DRAIN_MS: Final = 20
DRAIN_ROUNDS: Final = 64
HEAD: Final = 7  # preamble + length of a SAM_V frame
FIND_FAILED: Final = 0x80
IDENTITY_FIELDS: Final = ("name", "sex", "birth_date")  # as the serial samv_reader publishes

_VID_PID = re.compile(r"[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}")
_NODE = re.compile(r"/dev/bus/usb/(\d{3})/(\d{3})")


# -- finding and holding a device: blocking, on the session's worker thread only ---------------


class UsbOptions(DriverOptions):
    """Which device (``usb`` and ``serial_number``), which interface, how long a write may take."""

    usb: str = Field(min_length=1, description="vvvv:pppp, or a usb_device node path")
    serial_number: str = ""
    interface: int = Field(default=0, ge=0, le=255)
    timeout_ms: int = Field(default=1000, ge=50, le=60_000)

    @field_validator("usb")
    @classmethod
    def _usb(cls, value: str) -> str:
        if _VID_PID.fullmatch(value):
            return value.lower()
        if value.startswith("/"):
            return value
        raise ValueError("expected vvvv:pppp in hex, or the path of a USB device node")


def _criteria(opts: UsbOptions) -> dict[str, int]:
    if not opts.usb.startswith("/"):
        vid, pid = opts.usb.split(":")
        return {"idVendor": int(vid, 16), "idProduct": int(pid, 16)}
    node = _NODE.fullmatch(os.path.realpath(opts.usb))
    if node is None:
        if os.path.exists(opts.usb):
            raise DeviceFailed(f"{opts.usb} is not a USB device node (/dev/bus/usb/BBB/DDD)")
        raise DeviceUnavailable(f"{opts.usb}: not present")
    return {"bus": int(node[1]), "address": int(node[2])}


def find_device(opts: UsbOptions) -> Any:
    """The pyusb ``Device`` the options name. Raises ``DeviceUnavailable`` when it is absent."""
    match: Callable[[Any], bool] | None = None
    if opts.serial_number:

        def match(device: Any) -> bool:
            try:
                return bool(device.serial_number == opts.serial_number)
            except (usb.core.USBError, ValueError, NotImplementedError):
                return False  # no string descriptors, or no access: not provably ours

    try:
        device = usb.core.find(backend=BACKEND, custom_match=match, **_criteria(opts))
    except usb.core.NoBackendError as exc:
        raise DeviceFailed("no libusb backend for pyusb (apt install libusb-1.0-0)") from exc
    except usb.core.USBError as exc:
        raise DeviceUnavailable(f"{opts.usb}: cannot list USB devices ({exc})") from exc
    if device is None:
        serial = f" with serial {opts.serial_number!r}" if opts.serial_number else ""
        raise DeviceUnavailable(f"no USB device {opts.usb}{serial}")
    return device


class UsbLink:
    """One claimed interface of one device. Blocking: use from the session's worker thread."""

    def __init__(self, opts: UsbOptions, stopping: threading.Event) -> None:
        self.opts = opts
        self.stopping = stopping
        self.device: Any = None
        self.packet_sizes: dict[int, int] = {}  # endpoint address -> wMaxPacketSize
        self._detached = False

    def open(self) -> None:
        self.device = device = find_device(self.opts)
        number = self.opts.interface
        try:
            with contextlib.suppress(NotImplementedError):  # not every backend can tell
                if device.is_kernel_driver_active(number):
                    device.detach_kernel_driver(number)  # usbhid on a HID box, usblp…
                    self._detached = True
            try:
                config = device.get_active_configuration()
            except usb.core.USBError:
                config = None  # unconfigured; setting an active one again would reset it
            if config is None:
                device.set_configuration()
                config = device.get_active_configuration()
            usb.util.claim_interface(device, number)
            interface = usb.util.find_descriptor(config, bInterfaceNumber=number)
        except usb.core.USBError as exc:
            raise self.translate(exc, "open") from exc
        if interface is None:
            raise DeviceFailed(f"{self.opts.usb}: no interface {number}")
        self.packet_sizes = {
            int(ep.bEndpointAddress): int(ep.wMaxPacketSize) or 64 for ep in interface
        }

    def require(self, *endpoints: int) -> None:
        missing = [f"{e:#04x}" for e in endpoints if e not in self.packet_sizes]
        if missing:
            present = ", ".join(f"{e:#04x}" for e in sorted(self.packet_sizes)) or "none"
            raise DeviceFailed(
                f"{self.opts.usb}: interface {self.opts.interface} has no endpoint "
                f"{', '.join(missing)} (it has {present}): set the endpoint options"
            )

    def write(self, endpoint: int, data: bytes) -> None:
        try:  # a bulk write completes or raises: no short count to check
            self.device.write(endpoint, data, self.opts.timeout_ms)
        except usb.core.USBError as exc:
            if _timed_out(exc):
                raise DeviceFailed(f"{self.opts.usb}: write to {endpoint:#04x} timed out") from exc
            raise self.translate(exc, f"write {endpoint:#04x}") from exc

    def read(self, endpoint: int, size: int, timeout_ms: int = SLICE_MS) -> bytes | None:
        """One transfer of at most ``size`` bytes; None when nothing came within the timeout."""
        try:
            return bytes(self.device.read(endpoint, size, timeout_ms))
        except usb.core.USBError as exc:
            if _timed_out(exc):
                return None
            raise self.translate(exc, f"read {endpoint:#04x}") from exc

    def drain(self, *endpoints: int) -> None:
        """Throw away answers left over from before (a previous session, a broken frame)."""
        for endpoint in dict.fromkeys(endpoints):
            for _ in range(DRAIN_ROUNDS):
                if not self.read(endpoint, self.packet_sizes[endpoint] * 64, DRAIN_MS):
                    break

    def translate(self, exc: usb.core.USBError, what: str) -> GatewayError:
        where = f"{self.opts.usb}: {what}"
        if exc.errno == errno.ENODEV or "no such device" in str(exc).lower():
            return DeviceUnavailable(f"{where}: device gone ({exc})")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return DeviceFailed(f"{where}: permission denied (see systemd/60-gatewayd.rules)")
        if exc.errno == errno.EBUSY:
            return DeviceFailed(f"{where}: interface busy (another program holds it)")
        try:
            find_device(self.opts)
        except DeviceUnavailable:
            return DeviceUnavailable(f"{where}: device gone ({exc})")  # EIO/EPIPE of an unplug
        return DeviceFailed(f"{where}: {exc}")

    def close(self) -> None:
        device, self.device = self.device, None
        if device is None:
            return
        with contextlib.suppress(usb.core.USBError, ValueError, NotImplementedError):
            usb.util.release_interface(device, self.opts.interface)
            if self._detached:  # hand the device back to the kernel driver we took it from
                device.attach_kernel_driver(self.opts.interface)
        with contextlib.suppress(usb.core.USBError):
            usb.util.dispose_resources(device)


def _timed_out(exc: usb.core.USBError) -> bool:
    return isinstance(exc, usb.core.USBTimeoutError) or exc.errno == errno.ETIMEDOUT


class UsbDriver(Driver):
    """Session plumbing shared by the USB drivers: a worker thread owning one ``UsbLink``."""

    options = UsbOptions

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec)
        self.usb_options = cast(UsbOptions, spec.options)
        self.link: UsbLink | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopping = threading.Event()

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise DeviceUnavailable("session closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def prepare(self, link: UsbLink) -> None:
        """Check and ready the claimed interface (worker thread). Subclasses override."""

    async def _open(self) -> None:
        self._stopping = threading.Event()  # per session: a slow old worker keeps its own
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"usb:{self.spec.id}")
        self.link = link = UsbLink(self.usb_options, self._stopping)
        try:
            await self.call(link.open)
            await self.call(self.prepare, link)
        except BaseException:
            await self._close()
            raise

    async def _close(self) -> None:
        self._stopping.set()
        link, self.link = self.link, None
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if link is not None:
            # Queued behind a read in flight, which gives up within SLICE_MS.
            closing = asyncio.get_running_loop().run_in_executor(executor, link.close)
            done, _pending = await asyncio.wait({closing}, timeout=CLOSE_WAIT)
            if not done:
                self.log.warning("usb_close_slow")
        executor.shutdown(wait=False)


# -- the SAM_V ID-card reader -----------------------------------------------------------------


class UsbSamvOptions(UsbOptions):
    """Endpoints per the eastcoms note (see the module docstring); ``poll_ms`` paces the
    find → select → read cycle; a card counts as gone after ``absent_polls`` failed finds."""

    ep_out_header: int = Field(default=0x02, ge=0x01, le=0x0F)
    ep_out_body: int = Field(default=0x06, ge=0x01, le=0x0F)
    ep_in_header: int = Field(default=0x81, ge=0x81, le=0x8F)
    ep_in_body: int = Field(default=0x85, ge=0x81, le=0x8F)
    poll_ms: int = Field(default=500, ge=20, le=10_000)
    response_timeout_ms: int = Field(default=3000, ge=100, le=30_000)
    absent_polls: int = Field(default=1, ge=1, le=20)
    publish_identity: bool = False


class _Poll(Enum):
    NO_CARD = "no_card"
    STILL_THERE = "still_there"  # found again, already read this session: not read again
    NOTHING = "nothing"  # no answer worth acting on (logged); the card state is unchanged


class UsbSamvReader(UsbDriver):
    """A SAM_V ID-card reader on USB bulk pipes: polls find → select → read."""

    name = "usb_samv"
    method = Method.ID_CARD
    options = UsbSamvOptions

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec)
        self.opts = cast(UsbSamvOptions, spec.options)
        self._unremoved: str | None = None  # ID number reported whose removal was not seen

    def prepare(self, link: UsbLink) -> None:
        o = self.opts
        link.require(o.ep_out_header, o.ep_out_body, o.ep_in_header, o.ep_in_body)
        link.drain(o.ep_in_header, o.ep_in_body)

    async def _read(self) -> AsyncIterator[RawInput]:
        absent = 0
        in_field = False  # a card was read in this session and has not left since
        while not self._closed:
            started = time.monotonic()
            outcome = await self._poll_once(in_field)
            if self._closed:
                return
            if outcome is _Poll.NO_CARD:
                absent += 1
                if absent >= self.opts.absent_polls:
                    in_field, self._unremoved = False, None
            elif outcome is _Poll.STILL_THERE:
                absent = 0
            elif isinstance(outcome, IdCard):
                absent, in_field = 0, True
                if outcome.id_number != self._unremoved:
                    self._unremoved = outcome.id_number
                    self.log.info("id_card_read")
                    yield RawInput(token=self._token(outcome))
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, self.opts.poll_ms / 1000 - elapsed))

    async def _poll_once(self, in_field: bool) -> IdCard | _Poll:
        """One find → select → read; a card already read is only found, as the serial
        driver does (some readers beep on every read)."""
        find = await self._exchange(samv.FIND_CARD, "find")
        if find is None or not find.ok:
            return _Poll.NO_CARD if find is not None and find.sw3 == FIND_FAILED else _Poll.NOTHING
        if in_field:
            return _Poll.STILL_THERE
        select = await self._exchange(samv.SELECT_CARD, "select")
        if select is None or not select.ok:
            return _Poll.NOTHING
        read = await self._exchange(samv.READ_CARD, "read")
        if read is None or not read.ok:
            return _Poll.NOTHING
        try:
            return samv.decode_read(read).card
        except samv.SamvError as exc:  # codec messages name a field, never a name or address
            self.log.warning("id_card_data_invalid", error=str(exc))
        return _Poll.NOTHING

    async def _exchange(self, request: bytes, step: str) -> Response | None:
        """Send one request, decode its answer; a broken frame is logged and drained."""
        link = self.link
        if self._closed or link is None:
            return None
        frame = await self.call(self._transfer, link, request)
        if self._closed:
            return None
        decoder = samv.ResponseDecoder()
        decoder.feed(frame)
        decoder.feed(b"")
        try:
            response = decoder.next_item()
            if response is None:
                raise samv.SamvFrameError(f"no SAM_V frame in {len(frame)} bytes")
        except samv.SamvFrameError as exc:
            self.log.warning("samv_frame_error", step=step, error=str(exc))
            o = self.opts
            await self.call(link.drain, o.ep_in_header, o.ep_in_body)
            return None
        if not response.ok and response.sw3 != FIND_FAILED:
            error = samv.status_error(response.sw3)
            if isinstance(error, samv.SamFaultError):  # polling will not cure the SAM
                raise DeviceFailed(f"{self.opts.usb}: {step}: {error}") from error
            self.log.warning("id_card_error", step=step, status=response.status, error=str(error))
        return response

    def _transfer(self, link: UsbLink, request: bytes) -> bytes:
        """Worker thread: write one request, read back head and body (or what came)."""
        o = self.opts
        if o.ep_out_header == o.ep_out_body:
            link.write(o.ep_out_header, request)
        else:
            link.write(o.ep_out_header, request[:HEAD])
            link.write(o.ep_out_body, request[HEAD:])
        deadline = time.monotonic() + o.response_timeout_ms / 1000
        buf = bytearray()
        self._fill(link, buf, o.ep_in_header, HEAD, deadline)
        if buf[: len(samv.PREAMBLE)] == samv.PREAMBLE:
            length = buf[5] << 8 | buf[6]
            if length <= samv.DEFAULT_MAX_LENGTH:
                self._fill(link, buf, o.ep_in_body, HEAD + length, deadline)
        return bytes(buf)

    def _fill(
        self, link: UsbLink, buf: bytearray, endpoint: int, need: int, deadline: float
    ) -> None:
        packet = link.packet_sizes[endpoint]
        while len(buf) < need and not link.stopping.is_set():
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                raise DeviceFailed(
                    f"{self.opts.usb}: no complete answer within {self.opts.response_timeout_ms} ms"
                )
            # Whole packets: asking for less than the device sends in one would overflow.
            size = -(-(need - len(buf)) // packet) * packet
            chunk = link.read(endpoint, size, min(SLICE_MS, left_ms))
            if chunk:
                buf += chunk

    def _token(self, card: IdCard) -> Token:
        extra: dict[str, str | bool | int] = {}
        if self.opts.publish_identity:  # str() of the Sex enum is its value
            extra = {field: str(getattr(card, field)) for field in IDENTITY_FIELDS}
        return Token(kind=TokenKind.ID_NUMBER, value=card.id_number, extra=extra)


# -- the HID caller-ID box --------------------------------------------------------------------


class UsbHidCallerIdOptions(UsbOptions):
    """How the interrupt IN reports carry caller ID: unverified for every box, so all options.

    ``format``: ``text`` (modem-style ``NMBR = …`` lines; RING lines count rings), ``fsk`` (raw
    SDMF/MDMF packets) or ``dtmf`` (ASCII digits, ``A13812345678C``). Per report of
    ``report_size`` bytes (0 = wMaxPacketSize): ``header_bytes`` are dropped (a report ID); then
    with ``length_prefix`` one byte (masked with ``length_mask``) counts the payload, as HID
    UART bridges do, else the rest is payload less trailing 0x00 (``strip_padding``).
    ``idle_ms`` of silence closes a partial message (logged, no event).
    """

    endpoint: int = Field(default=0x81, ge=0x81, le=0x8F)
    format: Literal["text", "fsk", "dtmf"] = "text"
    report_size: int = Field(default=0, ge=0, le=4096)
    header_bytes: int = Field(default=0, ge=0, le=16)
    length_prefix: bool = False
    length_mask: int = Field(default=0x3F, ge=1, le=0xFF)
    strip_padding: bool = True
    idle_ms: int = Field(default=1500, ge=100, le=60_000)


def unframe_report(report: bytes, opts: UsbHidCallerIdOptions) -> bytes:
    """The payload bytes of one HID report, per the framing options."""
    data = report[opts.header_bytes :]
    if opts.length_prefix:
        return data[1 : 1 + (data[0] & opts.length_mask)] if data else b""
    return data.rstrip(b"\x00") if opts.strip_padding else data


CallerIdItem = Call | Ring | ModemReply | MessageWaiting | CallerIdError


CallerIdDecoder = ModemDecoder | FskDecoder | DtmfDecoder
DECODERS: Final[dict[str, Callable[[], CallerIdDecoder]]] = {
    "text": lambda: ModemDecoder(wait_for_name=False),  # the number out as soon as it comes
    "fsk": FskDecoder,
    "dtmf": DtmfDecoder,
}


def decode_payload(decoder: CallerIdDecoder, data: bytes, now: float) -> list[CallerIdItem]:
    """Feed payload (``b""`` = end of message, for every decoder); what came out, errors too."""
    if isinstance(decoder, ModemDecoder):
        decoder.feed(data, now)
    else:
        decoder.feed(data)
    items: list[CallerIdItem] = []
    while True:
        try:
            item = decoder.next_item()
        except CallerIdError as exc:
            items.append(exc)
            continue
        if item is None:
            return items
        items.append(item)


class UsbHidCallerId(UsbDriver):
    """A USB HID caller-ID box: reads interrupt reports, emits the number as soon as known."""

    name = "usb_callerid"
    method = Method.CALLER_ID
    options = UsbHidCallerIdOptions

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec)
        self.opts = cast(UsbHidCallerIdOptions, spec.options)

    def prepare(self, link: UsbLink) -> None:
        link.require(self.opts.endpoint)

    async def _read(self) -> AsyncIterator[RawInput]:
        o = self.opts
        link = self.link
        assert link is not None
        size = o.report_size or link.packet_sizes[o.endpoint]
        decoder = DECODERS[o.format]()
        last_data: float | None = None
        while not self._closed:
            report = await self.call(link.read, o.endpoint, size, SLICE_MS)
            if self._closed:
                return
            now = time.monotonic()
            data = unframe_report(report, o) if report else b""
            if data:
                last_data = now
                items = decode_payload(decoder, data, now)
            elif last_data is not None and now - last_data >= o.idle_ms / 1000:
                last_data = None
                items = decode_payload(decoder, b"", now)
            else:
                continue
            for item in items:
                raw = self._handle(item)
                if raw is not None:
                    yield raw

    def _handle(self, item: CallerIdItem) -> RawInput | None:
        if isinstance(item, CallerIdError):
            self.log.warning("caller_id_undecodable", error=str(item))
        elif isinstance(item, Ring):
            self.log.debug("ring", count=item.count)
        elif isinstance(item, Call) and item.number:
            self.log.info("caller_id", rings=item.rings)
            return RawInput(text=item.number, extra={"rings": item.rings})
        elif isinstance(item, Call) and item.reason is not None:
            self.log.info("caller_id_withheld", reason=item.reason.value)
        return None


@hookimpl
def gatewayd_driver_classes() -> list[type[Driver]]:
    return [UsbSamvReader, UsbHidCallerId]
