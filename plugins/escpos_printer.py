"""ESC/POS receipt printers (python-escpos): print jobs, the cash drawer, and member slips.

Every job is rendered to bytes with python-escpos's ``Dummy`` printer (pure, no I/O), queued,
and sent by the device session: over an asyncio TCP connection (``network``), through
python-escpos's ``Serial``/``Usb`` classes on a dedicated thread (``serial``, ``usb``), or kept
in memory (``dummy``). Where the connection can answer, the session asks the printer's real-time
status (``DLE EOT 1`` online, ``DLE EOT 4`` paper) every ``status_interval`` seconds and after
each job: no answer, paper out or "offline" make the device ``offline``.

Jobs survive the printer being offline: each waits in the queue until the printer is back, at
most ``job_timeout`` seconds, and then fails visibly (``perform`` raises ``PrintJobFailed``).
A job whose delivery was not confirmed is sent again once the printer is back (at most
``max_attempts`` times): a slip may print twice, it is never dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import structlog
from pydantic import Field, field_validator, model_validator

from gatewayd.drivers import DeviceSpec, Driver, DriverOptions, RawInput
from gatewayd.errors import DeviceUnavailable, GatewayError, UnsupportedAction
from gatewayd.events import IdentifyEvent, Phase, new_event_id
from gatewayd.hookspecs import hookimpl
from gatewayd.plugins.escpos_transports import WRITE_TIMEOUT as WRITE_TIMEOUT
from gatewayd.plugins.escpos_transports import DummyTransport, make_transport
from gatewayd.plugins.escpos_transports import EscposDeviceTransport as EscposDeviceTransport
from gatewayd.plugins.escpos_transports import NetworkTransport as NetworkTransport
from gatewayd.plugins.escpos_transports import Transport as Transport
from gatewayd.protocols.escpos import DLE_EOT as DLE_EOT
from gatewayd.protocols.escpos import PAPER_END as PAPER_END
from gatewayd.protocols.escpos import PAPER_NEAR_END as PAPER_NEAR_END
from gatewayd.protocols.escpos import PRINTER_OFFLINE, Paper, kv_line, mask_card, paper_state, yuan
from gatewayd.protocols.escpos import text_width as text_width
from gatewayd.protocols.tokens import Method
from gatewayd.sinks import Sink

if TYPE_CHECKING:
    from escpos.printer import Dummy

# python-escpos pulls in Pillow, qrcode and more (~9 MB): it is imported where a printer is
# actually used, so a gateway without a printer does not carry it. Status parsing and text
# layout are in ``protocols/escpos.py``; the transports (the only I/O) in ``escpos_transports``.

log = structlog.get_logger("gatewayd.sinks")


class PrintJobFailed(GatewayError):
    """A print or drawer job could not be delivered (printer offline too long, stopped)."""


class PrintRequestInvalid(GatewayError, ValueError):
    """A print request that cannot be rendered: unknown template, missing or bad fields."""


class EscposOptions(DriverOptions):
    """Where the printer is and how jobs behave.

    ``connection``: ``network`` (``host``, ``port`` default 9100), ``serial`` (``port`` = the
    device path, ``baudrate``), ``usb`` (``vendor_id``, ``product_id``; hex strings allowed) or
    ``dummy`` (in memory). ``profile`` names a python-escpos capability profile; ``width`` is
    the characters per line (48 on 80 mm paper, 32 on 58 mm).
    """

    connection: Literal["network", "serial", "usb", "dummy"]
    host: str | None = None
    port: int | str | None = None
    baudrate: int = 9600
    vendor_id: int | None = None
    product_id: int | None = None
    profile: str | None = None
    width: int = Field(default=48, ge=16, le=96)
    language: Literal["zh", "en"] = "zh"
    qr: Literal["native", "image"] = "native"
    qr_size: int = Field(default=6, ge=1, le=16)
    cut: bool = True
    drawer_pin: Literal[2, 5] = 2
    status: bool = True
    status_interval: float = Field(default=5.0, gt=0)
    reply_timeout: float = Field(default=1.0, gt=0)
    connect_timeout: float = Field(default=3.0, gt=0)
    retry_interval: float = Field(default=1.0, ge=0)
    job_timeout: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    member_slip: bool = True

    @field_validator("vendor_id", "product_id", mode="before")
    @classmethod
    def _hex_id(cls, value: Any) -> Any:
        return int(value, 16) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _connection_fields(self) -> EscposOptions:
        if self.connection == "network":
            if not self.host:
                raise ValueError("network printers need host")
            if self.port is not None and not isinstance(self.port, int):
                raise ValueError("port of a network printer is a TCP port number")
        elif self.connection == "serial" and not isinstance(self.port, str):
            raise ValueError("serial printers need port, the device path (/dev/ttyUSB0)")
        elif self.connection == "usb" and (self.vendor_id is None or self.product_id is None):
            raise ValueError("usb printers need vendor_id and product_id")
        return self


# -- rendering: bytes from python-escpos's Dummy, no I/O ---------------------------------------

LABELS = {
    "zh": {"title": "会员信息", "card": "卡号", "level": "等级", "points": "积分",
           "balance": "储值余额", "yuan": "元"},
    "en": {"title": "MEMBER", "card": "Card", "level": "Level", "points": "Points",
           "balance": "Balance", "yuan": " CNY"},
}  # fmt: skip


def _canvas(options: EscposOptions) -> Dummy:
    from escpos.printer import Dummy

    canvas = Dummy(profile=options.profile)
    canvas.hw("INIT")
    return canvas


def _finish(canvas: Dummy, options: EscposOptions) -> bytes:
    if options.cut:
        canvas.cut()
    return cast(bytes, canvas.output)


def _integer(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PrintRequestInvalid(f"{key} must be an integer, not {value!r}")
    return value


def render_text(text: str, options: EscposOptions) -> bytes:
    canvas = _canvas(options)
    canvas.text(text if text.endswith("\n") else text + "\n")
    return _finish(canvas, options)


def render_member_slip(data: Mapping[str, Any], options: EscposOptions) -> bytes:
    """Masked card number, level, points, balance (``balance_fen``) and a QR of the member code."""
    labels, width = LABELS[options.language], options.width
    points, balance = _integer(data, "points"), _integer(data, "balance_fen")
    rows = [
        (labels["card"], mask_card(str(data.get("card_number") or ""))),
        (labels["level"], str(data.get("level") or "-")),
        (labels["points"], "-" if points is None else str(points)),
        (labels["balance"], "-" if balance is None else yuan(balance) + labels["yuan"]),
    ]
    canvas = _canvas(options)
    canvas.set(align="center", bold=True)
    canvas.text(labels["title"] + "\n")
    canvas.set(align="left", bold=False)
    canvas.text("-" * width + "\n")
    for label, value in rows:
        canvas.text(kv_line(label, value, width) + "\n")
    canvas.text("-" * width + "\n")
    code = data.get("member_code")
    if code:
        canvas.set(align="center")
        canvas.qr(str(code), native=options.qr == "native", size=options.qr_size)
        canvas.text("\n")
        canvas.set(align="left")
    return _finish(canvas, options)


def render_receipt(data: Mapping[str, Any], options: EscposOptions) -> bytes:
    """``title``, ``lines`` as ``[label, value]`` pairs, ``footer``."""
    lines = data.get("lines") or []
    if not isinstance(lines, list) or not all(
        isinstance(x, list | tuple) and len(x) == 2 for x in lines
    ):
        raise PrintRequestInvalid("lines must be a list of [label, value] pairs")
    canvas = _canvas(options)
    if data.get("title"):
        canvas.set(align="center", bold=True)
        canvas.text(f"{data['title']}\n")
        canvas.set(align="left", bold=False)
    for label, value in lines:
        canvas.text(kv_line(str(label), str(value), options.width) + "\n")
    if data.get("footer"):
        canvas.text(f"{data['footer']}\n")
    return _finish(canvas, options)


TEMPLATES: dict[str, Callable[[Mapping[str, Any], EscposOptions], bytes]] = {
    "member_slip": render_member_slip,
    "receipt": render_receipt,
}


def render_print(params: Mapping[str, Any], options: EscposOptions) -> bytes:
    """``{"text": "..."}`` or ``{"template": name, "data": {...}}``."""
    if "text" in params:
        if not isinstance(params["text"], str) or "template" in params:
            raise PrintRequestInvalid("give either text (a string) or template and data")
        return render_text(params["text"], options)
    template = TEMPLATES.get(str(params.get("template")))
    if template is None:
        raise PrintRequestInvalid(f"template must be one of {sorted(TEMPLATES)} (or give text)")
    data = params.get("data") or {}
    if not isinstance(data, Mapping):
        raise PrintRequestInvalid("data must be an object")
    return template(data, options)


def render_drawer(params: Mapping[str, Any], options: EscposOptions) -> bytes:
    """ESC p m t1 t2: a 50 ms pulse on pin 2 (m=0) or 5 (m=1), then 500 ms off."""
    pin = params.get("pin", options.drawer_pin)
    if pin not in (2, 5):
        raise PrintRequestInvalid("pin must be 2 or 5")
    from escpos.printer import Dummy

    canvas = Dummy(profile=options.profile)
    canvas.cashdraw([27, 112, 0 if pin == 2 else 1, 25, 250])
    return cast(bytes, canvas.output)


# -- the driver -------------------------------------------------------------------------------


@dataclass(eq=False)
class PrintJob:
    id: str
    action: str
    data: bytes
    future: asyncio.Future[dict[str, Any]]
    attempts: int = 0
    sending: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set while not being sent

    def __post_init__(self) -> None:
        self.idle.set()


class EscposPrinter(Driver):
    """A receipt printer. Actions: ``print``, ``open-drawer``, ``status``."""

    name = "escpos"
    method = Method.MANUAL
    options = EscposOptions

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec)
        self.opts = cast(EscposOptions, spec.options)
        self.transport = make_transport(self.opts)
        self.paper: Paper = "unknown"
        self._jobs: deque[PrintJob] = deque()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._open_failed = False

    @property
    def dummy_output(self) -> bytes:
        """Everything sent to a ``dummy`` printer."""
        assert isinstance(self.transport, DummyTransport)
        return cast(bytes, self.transport.printer.output)

    @property
    def _polls(self) -> bool:
        return self.opts.status and self.transport.has_status

    async def perform(self, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if action == "status":
            return {
                "state": self.state.value,
                "paper": self.paper,
                "queued": len(self._jobs),
                "last_error": self.last_error,
            }
        if action == "print":
            data = render_print(params, self.opts)
        elif action == "open-drawer":
            data = render_drawer(params, self.opts)
        else:
            raise UnsupportedAction(f"driver 'escpos' has no action {action!r}")
        return await self.submit(action, data)

    async def submit(self, action: str, data: bytes) -> dict[str, Any]:
        """Queue raw bytes; return once printed. Raises ``PrintJobFailed`` past the bound."""
        if self._closed:
            raise PrintJobFailed(f"printer {self.spec.id} is stopped")
        job = PrintJob(new_event_id(), action, data, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._wake.set()
        self.log.info("print_job_queued", job=job.id, action=action, size=len(data))
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.opts.job_timeout)
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            if not job.sending:
                self._drop(job)
            raise
        await job.idle.wait()  # a send in progress ends within the transport's timeouts
        if job.future.done():
            return job.future.result()
        self._drop(job)
        error = PrintJobFailed(
            f"{action} job {job.id} not printed within {self.opts.job_timeout:g}s: printer "
            f"{self.spec.id} is {self.state.value} ({self.last_error or 'no error'})"
        )
        self.log.error("print_job_failed", job=job.id, action=action, error=str(error))
        raise error

    def _drop(self, job: PrintJob) -> None:
        with contextlib.suppress(ValueError):
            self._jobs.remove(job)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _open(self) -> None:
        if self._open_failed:  # offline: retry every retry_interval, not four times a second
            await self._pause(self.opts.retry_interval)
        try:
            if self._closed:
                raise DeviceUnavailable("stopping")
            await self.transport.open()
            if self._polls:
                await self._check_status()
        except DeviceUnavailable:
            self._open_failed = True
            await self.transport.close()
            raise
        self._open_failed = False

    async def _read(self) -> AsyncIterator[RawInput]:
        """Send queued jobs and poll the status; a printer has no input to yield."""
        loop = asyncio.get_running_loop()
        next_poll = loop.time() + self.opts.status_interval
        while not self._closed:
            self._wake.clear()
            job = self._next_job()
            if job is not None:
                await self._send(job)
            elif self._polls and loop.time() >= next_poll:
                await self._check_status()
                next_poll = loop.time() + self.opts.status_interval
            else:
                timeout = next_poll - loop.time() if self._polls else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        return
        yield  # an async generator that never yields

    def _next_job(self) -> PrintJob | None:
        while self._jobs and self._jobs[0].future.done():
            self._jobs.popleft()
        return self._jobs[0] if self._jobs else None

    async def _send(self, job: PrintJob) -> None:
        job.sending, job.attempts = True, job.attempts + 1
        job.idle.clear()
        try:
            await self.transport.write(job.data)
            if self._polls:
                await self._check_status()  # an answer: the printer has the bytes
        except DeviceUnavailable as exc:
            if job.attempts >= self.opts.max_attempts:
                self._drop(job)
                self.log.error(
                    "print_job_failed", job=job.id, attempts=job.attempts, error=str(exc)
                )
                job.future.set_exception(
                    PrintJobFailed(f"{job.action} job {job.id}: {job.attempts} attempts: {exc}")
                )
            else:
                self.log.warning(
                    "print_job_retry", job=job.id, attempts=job.attempts, error=str(exc)
                )
            raise
        finally:
            job.sending = False
            job.idle.set()
        self._drop(job)
        self.log.info("print_job_done", job=job.id, action=job.action, attempts=job.attempts)
        if not job.future.done():
            job.future.set_result({"job": job.id, "status": "printed", "bytes": len(job.data)})

    async def _check_status(self) -> None:
        online = await self.transport.query(1)
        if online is None:
            raise DeviceUnavailable("printer does not answer status requests (DLE EOT)")
        reply = await self.transport.query(4)
        paper = paper_state(reply) if reply is not None else "unknown"
        if paper != self.paper:
            self.log.info("printer_paper", paper=paper)
            self.paper = paper
        if paper == "out":
            raise DeviceUnavailable("paper out")
        if online & PRINTER_OFFLINE:
            raise DeviceUnavailable("printer reports offline (cover open or error)")

    async def _close(self) -> None:
        await self.transport.close()
        if self._closed:
            self._stopping.set()
            self._wake.set()
            while self._jobs:
                job = self._jobs.popleft()
                if not job.future.done():
                    job.future.set_exception(PrintJobFailed(f"printer {self.spec.id} stopped"))


# -- the member-slip sink ---------------------------------------------------------------------


class MemberSlipSink(Sink):
    """Prints a member slip when an event is resolved to a member at a terminal with a printer.

    ``printers`` maps a terminal id to that terminal's ``EscposPrinter``. It is read at every
    event, so the daemon may pass a dict that it keeps up to date. A printer whose option
    ``member_slip`` is false is skipped. Slips print in their own tasks, so an offline printer
    delays no other terminal; a failed slip is logged as ``member_slip_failed``.

    Fields used from ``event.member``: ``card_number`` (else ``member_code``; printed masked),
    ``level``, ``points``, ``balance_fen`` and ``member_code`` (the QR code).
    """

    name = "member_slip"

    def __init__(self, printers: Mapping[str, EscposPrinter], drain_seconds: float = 10.0) -> None:
        self.printers = printers
        self.drain_seconds = drain_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle_event(self, event: IdentifyEvent) -> None:
        if event.phase is not Phase.RESOLVED or not event.member:
            return
        printer = self.printers.get(event.terminal)
        if printer is None or not printer.opts.member_slip:
            return
        member = event.member
        data = {
            "card_number": member.get("card_number") or member.get("member_code"),
            "level": member.get("level"),
            "points": member.get("points"),
            "balance_fen": member.get("balance_fen"),
            "member_code": member.get("member_code"),
        }
        task = asyncio.create_task(self._print(printer, event, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _print(
        self, printer: EscposPrinter, event: IdentifyEvent, data: dict[str, Any]
    ) -> None:
        try:
            await printer.perform("print", {"template": "member_slip", "data": data})
        except Exception as exc:  # noqa: BLE001 - one slip's failure is logged, never raised
            log.error(
                "member_slip_failed",
                event_id=event.event_id,
                terminal=event.terminal,
                device=printer.spec.id,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def stop(self) -> None:
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=self.drain_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


@hookimpl
def gatewayd_driver_classes() -> list[type[Driver]]:
    return [EscposPrinter]
