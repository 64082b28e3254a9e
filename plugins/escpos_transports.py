"""How bytes reach an ESC/POS printer: raw TCP, python-escpos's Serial/Usb on a thread, memory.

Separate from the driver (``escpos_printer.py``) because this is the only I/O: each transport
opens, writes, asks one status byte and closes, and turns every library or OS failure into
``DeviceUnavailable``. The driver's queueing, retries and status rules do not depend on which
transport is used.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from gatewayd.errors import DeviceUnavailable
from gatewayd.protocols.escpos import DLE_EOT

if TYPE_CHECKING:
    from gatewayd.plugins.escpos_printer import EscposOptions

T = TypeVar("T")
WRITE_TIMEOUT = 10.0


class Transport(ABC):
    """One way to reach the printer. Raises ``DeviceUnavailable`` when it is not reachable."""

    has_status: ClassVar[bool] = True

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def write(self, data: bytes) -> None: ...

    async def query(self, n: int) -> int | None:
        """The reply byte to ``DLE EOT n``, or None when the printer does not answer."""
        return None

    @abstractmethod
    async def close(self) -> None: ...


class NetworkTransport(Transport):
    """Raw TCP (port 9100), held open between jobs so that status can be asked."""

    def __init__(self, options: EscposOptions) -> None:
        self.host, self.port = cast(str, options.host), cast(int, options.port or 9100)
        self.options = options
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.options.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise DeviceUnavailable(f"{self.host}:{self.port} not reachable: {exc!r}") from exc

    async def write(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise DeviceUnavailable("not connected")
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), WRITE_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise DeviceUnavailable(f"{self.host}:{self.port} write failed: {exc!r}") from exc

    async def query(self, n: int) -> int | None:
        await self.write(DLE_EOT + bytes([n]))
        assert self._reader is not None
        try:
            reply = await asyncio.wait_for(self._reader.read(1), self.options.reply_timeout)
        except TimeoutError:
            return None
        except OSError as exc:
            raise DeviceUnavailable(f"{self.host}:{self.port} read failed: {exc!r}") from exc
        if not reply:
            raise DeviceUnavailable(f"{self.host}:{self.port} closed the connection")
        return reply[0]

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


class EscposDeviceTransport(Transport):
    """python-escpos's blocking ``Serial``/``Usb`` classes, driven from one dedicated thread."""

    def __init__(self, factory: Callable[[], Any], label: str, serial: bool) -> None:
        self._factory, self.label, self._serial = factory, label, serial
        self._printer: Any = None
        self._executor: ThreadPoolExecutor | None = None

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise DeviceUnavailable(f"{self.label}: not open")
        from escpos.exceptions import Error as EscposError

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
        except (EscposError, OSError, ValueError) as exc:  # SerialException, USBError: OSError
            raise DeviceUnavailable(f"{self.label}: {exc}") from exc

    def _open_blocking(self) -> Any:
        printer = self._factory()
        printer.open()
        if self._serial:  # DSR/DTR flow control would block a write to a powered-off printer
            printer.device.write_timeout = WRITE_TIMEOUT
        return printer

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"escpos:{self.label}")
        try:
            self._printer = await self._run(self._open_blocking)
        except DeviceUnavailable:
            await self.close()
            raise

    async def write(self, data: bytes) -> None:
        await self._run(self._printer._raw, data)  # python-escpos's raw-bytes entry point

    def _query_blocking(self, n: int) -> int | None:
        self._printer._raw(DLE_EOT + bytes([n]))
        if self._serial:
            reply = self._printer.device.read(1)  # bounded by the port's timeout
        else:
            try:
                reply = self._printer._read()  # bounded by pyusb's default timeout
            except OSError:  # usb.core.USBTimeoutError
                return None
        return reply[0] if reply else None

    async def query(self, n: int) -> int | None:
        return await self._run(self._query_blocking, n)

    async def close(self) -> None:
        printer, self._printer = self._printer, None
        if printer is not None:
            with contextlib.suppress(DeviceUnavailable):
                await self._run(printer.close)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


class DummyTransport(Transport):
    """In memory (python-escpos ``Dummy``): always there, never answers status."""

    has_status = False

    def __init__(self) -> None:
        from escpos.printer import Dummy

        self.printer = Dummy()

    async def open(self) -> None:
        return None

    async def write(self, data: bytes) -> None:
        self.printer._raw(data)

    async def close(self) -> None:
        return None


def make_transport(options: EscposOptions) -> Transport:
    if options.connection == "network":
        return NetworkTransport(options)
    from escpos.printer import Serial, Usb

    if options.connection == "serial":
        device, baud = cast(str, options.port), options.baudrate
        return EscposDeviceTransport(
            lambda: Serial(devfile=device, baudrate=baud, timeout=options.reply_timeout),
            device,
            serial=True,
        )
    if options.connection == "usb":
        vid, pid = cast(int, options.vendor_id), cast(int, options.product_id)
        return EscposDeviceTransport(
            lambda: Usb(vid, pid, timeout=int(WRITE_TIMEOUT * 1000)),
            f"usb {vid:04x}:{pid:04x}",
            False,
        )
    return DummyTransport()
