"""Fake USB devices plugged in through pyusb's own backend interface (``usb.backend.IBackend``).

The drivers call the real pyusb API (``usb.core.find``, ``set_configuration``,
``claim_interface``, ``read``/``write``); only the layer under it, which would be libusb, is
emulated here: descriptors, string descriptors, a kernel driver that must be detached before
the interface can be claimed, endpoint queues with timeouts, and unplugging (``ENODEV`` on
every handle opened before, as libusb reports it).
"""

from __future__ import annotations

import array
import errno
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import usb.backend
import usb.core

from gatewayd.protocols.samv import (
    IdCard,
    RequestDecoder,
    Response,
    find_fail_response,
    find_ok_response,
    read_fail_response,
    read_ok_response,
    select_fail_response,
    select_ok_response,
)

BULK, INTERRUPT = 2, 3
SERIAL_INDEX = 3


@dataclass(frozen=True)
class EndpointSpec:
    address: int
    kind: int = BULK
    max_packet: int = 64


def no_device() -> usb.core.USBError:
    return usb.core.USBError("No such device (it may have been disconnected)", -4, errno.ENODEV)


class FakeDevice:
    """One device with one configuration and one interface (number 0)."""

    def __init__(
        self,
        vid: int,
        pid: int,
        endpoints: list[EndpointSpec],
        *,
        interface_class: int = 0xFF,
        serial: str = "",
        kernel_driver: bool = False,
        bus: int = 1,
        address: int = 5,
    ) -> None:
        self.vid, self.pid, self.serial = vid, pid, serial
        self.endpoints = endpoints
        self.interface_class = interface_class
        self.bus, self.address = bus, address
        self.has_kernel_driver = kernel_driver
        self.kernel_driver_active = kernel_driver
        self.plugged = False
        self.generation = 0
        self.configuration = 0
        self.claimed: set[int] = set()
        self.detaches = 0
        self.set_configurations = 0
        self.read_waiting = threading.Event()  # a host read is blocked on an empty queue
        self._cond = threading.Condition()
        self._in: dict[int, deque[bytes]] = {
            ep.address: deque() for ep in endpoints if ep.address & 0x80
        }

    # -- the test's side --------------------------------------------------------------------

    def plug(self) -> None:
        """(Re)connect: a fresh, unconfigured device, its kernel driver bound again."""
        with self._cond:
            self.generation += 1
            self.plugged = True
            self.configuration = 0
            self.claimed.clear()
            self.kernel_driver_active = self.has_kernel_driver
            for queue in self._in.values():
                queue.clear()

    def unplug(self) -> None:
        with self._cond:
            self.plugged = False
            self._cond.notify_all()

    def queue_in(self, endpoint: int, data: bytes) -> None:
        """The device sends ``data`` on an IN endpoint (a host read of it ends there)."""
        with self._cond:
            self._in[endpoint].append(data)
            self._cond.notify_all()

    def handle_out(self, endpoint: int, data: bytes) -> None:
        """The host wrote ``data`` to an OUT endpoint. Subclasses answer."""

    # -- the backend's side -----------------------------------------------------------------

    def check(self, generation: int | None = None) -> None:
        if not self.plugged or (generation is not None and generation != self.generation):
            raise no_device()

    def host_write(self, generation: int, endpoint: int, data: bytes) -> int:
        with self._cond:
            self.check(generation)
        self.handle_out(endpoint, data)
        return len(data)

    def host_read(self, generation: int, endpoint: int, size: int, timeout_ms: int) -> bytes:
        deadline = time.monotonic() + (timeout_ms or 60_000) / 1000
        with self._cond:
            while True:
                self.check(generation)
                queue = self._in[endpoint]
                if queue:
                    head = queue.popleft()
                    if len(head) > size:
                        queue.appendleft(head[size:])
                    return head[:size]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise usb.core.USBTimeoutError("Operation timed out", -7, errno.ETIMEDOUT)
                self.read_waiting.set()
                self._cond.wait(left)

    def device_descriptor(self) -> SimpleNamespace:
        return SimpleNamespace(
            bLength=18,
            bDescriptorType=1,
            bcdUSB=0x0200,
            bDeviceClass=0,
            bDeviceSubClass=0,
            bDeviceProtocol=0,
            bMaxPacketSize0=64,
            idVendor=self.vid,
            idProduct=self.pid,
            bcdDevice=0x0100,
            iManufacturer=0,
            iProduct=0,
            iSerialNumber=SERIAL_INDEX if self.serial else 0,
            bNumConfigurations=1,
            address=self.address,
            bus=self.bus,
            port_number=1,
            port_numbers=(1,),
            speed=2,
        )

    def configuration_descriptor(self) -> SimpleNamespace:
        return SimpleNamespace(
            bLength=9,
            bDescriptorType=2,
            wTotalLength=18 + 7 * len(self.endpoints),
            bNumInterfaces=1,
            bConfigurationValue=1,
            iConfiguration=0,
            bmAttributes=0x80,
            bMaxPower=50,
            extra_descriptors=[],
        )

    def interface_descriptor(self) -> SimpleNamespace:
        return SimpleNamespace(
            bLength=9,
            bDescriptorType=4,
            bInterfaceNumber=0,
            bAlternateSetting=0,
            bNumEndpoints=len(self.endpoints),
            bInterfaceClass=self.interface_class,
            bInterfaceSubClass=0,
            bInterfaceProtocol=0,
            iInterface=0,
            extra_descriptors=[],
        )

    def endpoint_descriptor(self, index: int) -> SimpleNamespace:
        ep = self.endpoints[index]
        return SimpleNamespace(
            bLength=7,
            bDescriptorType=5,
            bEndpointAddress=ep.address,
            bmAttributes=ep.kind,
            wMaxPacketSize=ep.max_packet,
            bInterval=10 if ep.kind == INTERRUPT else 0,
            bRefresh=0,
            bSynchAddress=0,
            extra_descriptors=[],
        )

    def string_descriptor(self, index: int) -> bytes:
        if index == 0:
            return bytes([4, 3, 0x09, 0x04])  # LANGID en-US
        if index == SERIAL_INDEX and self.serial:
            text = self.serial.encode("utf-16-le")
            return bytes([2 + len(text), 3]) + text
        raise usb.core.USBError("Pipe error", -9, errno.EPIPE)


@dataclass
class Handle:
    device: FakeDevice
    generation: int

    def check(self) -> None:
        self.device.check(self.generation)


class FakeBus(usb.backend.IBackend):
    """What libusb would be: the devices plugged in, and transfers to them."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: list[FakeDevice] = []
        self.opened = 0
        self.closed = 0

    def attach(self, device: FakeDevice) -> FakeDevice:
        self.devices.append(device)
        device.plug()
        return device

    def enumerate_devices(self) -> list[FakeDevice]:
        return [d for d in self.devices if d.plugged]

    def get_device_descriptor(self, dev: FakeDevice) -> SimpleNamespace:
        return dev.device_descriptor()

    def get_configuration_descriptor(self, dev: FakeDevice, config: int) -> SimpleNamespace:
        if config != 0:
            raise IndexError(config)
        return dev.configuration_descriptor()

    def get_interface_descriptor(
        self, dev: FakeDevice, intf: int, alt: int, config: int
    ) -> SimpleNamespace:
        if (intf, alt, config) != (0, 0, 0):
            raise IndexError((intf, alt, config))
        return dev.interface_descriptor()

    def get_endpoint_descriptor(
        self, dev: FakeDevice, ep: int, intf: int, alt: int, config: int
    ) -> SimpleNamespace:
        return dev.endpoint_descriptor(ep)

    def open_device(self, dev: FakeDevice) -> Handle:
        dev.check()
        self.opened += 1
        return Handle(dev, dev.generation)

    def close_device(self, dev_handle: Handle) -> None:
        self.closed += 1

    def set_configuration(self, dev_handle: Handle, config_value: int) -> None:
        dev_handle.check()
        dev_handle.device.configuration = config_value
        dev_handle.device.set_configurations += 1

    def get_configuration(self, dev_handle: Handle) -> int:
        dev_handle.check()
        return dev_handle.device.configuration

    def claim_interface(self, dev_handle: Handle, intf: int) -> None:
        dev_handle.check()
        if dev_handle.device.kernel_driver_active:
            raise usb.core.USBError("Resource busy", -6, errno.EBUSY)
        dev_handle.device.claimed.add(intf)

    def release_interface(self, dev_handle: Handle, intf: int) -> None:
        dev_handle.check()
        dev_handle.device.claimed.discard(intf)

    def is_kernel_driver_active(self, dev_handle: Handle, intf: int) -> bool:
        dev_handle.check()
        return dev_handle.device.kernel_driver_active

    def detach_kernel_driver(self, dev_handle: Handle, intf: int) -> None:
        dev_handle.check()
        dev_handle.device.kernel_driver_active = False
        dev_handle.device.detaches += 1

    def attach_kernel_driver(self, dev_handle: Handle, intf: int) -> None:
        dev_handle.check()
        dev_handle.device.kernel_driver_active = dev_handle.device.has_kernel_driver

    def _transfer_check(self, dev_handle: Handle, intf: int) -> None:
        dev_handle.check()
        if intf not in dev_handle.device.claimed:
            raise usb.core.USBError("Access denied (interface not claimed)", -3, errno.EACCES)

    def bulk_write(self, dev_handle: Handle, ep: int, intf: int, data: Any, timeout: int) -> int:
        self._transfer_check(dev_handle, intf)
        return dev_handle.device.host_write(dev_handle.generation, ep, bytes(data))

    intr_write = bulk_write

    def bulk_read(self, dev_handle: Handle, ep: int, intf: int, buff: Any, timeout: int) -> int:
        self._transfer_check(dev_handle, intf)
        data = dev_handle.device.host_read(dev_handle.generation, ep, len(buff), timeout)
        buff[: len(data)] = array.array("B", data)
        return len(data)

    intr_read = bulk_read

    def ctrl_transfer(
        self,
        dev_handle: Handle,
        request_type: int,
        request: int,
        value: int,
        index: int,
        data: Any,
        timeout: int,
    ) -> int:
        dev_handle.check()
        if (request_type, request, value >> 8) != (0x80, 0x06, 3):  # GET_DESCRIPTOR string
            raise usb.core.USBError("Pipe error", -9, errno.EPIPE)
        descriptor = dev_handle.device.string_descriptor(value & 0xFF)[: len(data)]
        data[: len(descriptor)] = array.array("B", descriptor)
        return len(descriptor)


class FakeSamvReader(FakeDevice):
    """A USB SAM_V reader: preamble+length on 0x02, body on 0x06; answers on 0x81 and 0x85.

    ``card`` is what lies in the field; it answers every find while there (readers that hide
    a card once read are the easier case). ``corrupt_reads`` spoils the checksum of that many
    read answers; ``respond = False`` swallows requests (a reader busy, or dying).
    """

    def __init__(self, *, single_pipe: bool = False, **kwargs: Any) -> None:
        if single_pipe:  # one bulk pair carrying whole frames, as some readers have
            endpoints = [EndpointSpec(0x01), EndpointSpec(0x81)]
        else:
            endpoints = [EndpointSpec(a) for a in (0x02, 0x06, 0x81, 0x85)]
        super().__init__(0x0400, 0xC35A, endpoints, **kwargs)
        self.single_pipe = single_pipe
        self.card: IdCard | None = None
        self.find_status: int | None = None  # SW3 forced on every find (a faulty SAM)
        self.corrupt_reads = 0
        self.respond = True
        self.requests: list[tuple[int, int]] = []
        self.violations: list[str] = []
        self._head: bytes | None = None

    def handle_out(self, endpoint: int, data: bytes) -> None:
        if self.single_pipe:
            self._request(data)
            return
        if endpoint == 0x02:
            if len(data) != 7 or self._head is not None:
                self.violations.append(f"0x02 got {data.hex()} (head pending: {self._head})")
            self._head = data
            return
        if endpoint != 0x06 or self._head is None:
            self.violations.append(f"{endpoint:#04x} got {data.hex()} without a head")
            return
        head, self._head = self._head, None
        self._request(head + data)

    def _request(self, frame: bytes) -> None:
        decoder = RequestDecoder()
        decoder.feed(frame)
        request = decoder.next_item()
        if request is None:
            self.violations.append(f"incomplete request {frame.hex()}")
            return
        self.requests.append((request.cmd, request.para))
        answer = self._answer(request.cmd, request.para)
        if not self.respond:
            return
        if self.single_pipe:
            self.queue_in(0x81, answer)  # one stream: the host reads it in packets
        else:
            self.queue_in(0x81, answer[:7])
            self.queue_in(0x85, answer[7:])

    def _answer(self, cmd: int, para: int) -> bytes:
        card = self.card
        if (cmd, para) == (0x20, 0x01):
            if self.find_status is not None:
                return Response(sw3=self.find_status).encode()
            return find_ok_response() if card else find_fail_response()
        if (cmd, para) == (0x20, 0x02):
            return select_ok_response() if card else select_fail_response()
        if (cmd, para) == (0x30, 0x01):
            if card is None:
                return read_fail_response()
            answer = read_ok_response(card)
            if self.corrupt_reads:
                self.corrupt_reads -= 1
                answer = answer[:-1] + bytes([answer[-1] ^ 0x5A])
            return answer
        return Response(sw3=0x21).encode()

    def reads(self) -> int:
        return self.requests.count((0x30, 0x01))


class FakeHidCallerIdBox(FakeDevice):
    """A HID caller-ID box: usbhid bound to it, payload sent as fixed-size interrupt reports."""

    def __init__(self, *, report_size: int = 8, length_prefix: bool = False, **kwargs: Any) -> None:
        super().__init__(
            0x1A2B,
            0x3C4D,
            [EndpointSpec(0x81, INTERRUPT, report_size)],
            interface_class=3,
            kernel_driver=True,
            **kwargs,
        )
        self.report_size = report_size
        self.length_prefix = length_prefix

    def send(self, payload: bytes) -> None:
        """Split ``payload`` into reports padded with 0x00 (after a length byte if framed so)."""
        room = self.report_size - (1 if self.length_prefix else 0)
        for start in range(0, len(payload), room):
            chunk = payload[start : start + room]
            head = bytes([len(chunk)]) if self.length_prefix else b""
            self.queue_in(0x81, (head + chunk).ljust(self.report_size, b"\x00"))
