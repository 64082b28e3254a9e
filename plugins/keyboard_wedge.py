"""Keyboard-wedge devices (USB HID barcode guns, magstripe readers, terminals) through evdev.

Why it is built this way:

* The device is ``grab()``bed (in an executor: an ioctl on a device node) so its keystrokes
  never reach the focused application, and decoded with a ``KeyDecoder`` of its own: Shift,
  CapsLock and AltGr state and the keyboard layout (us/fr/de) are per device, because an
  AZERTY scanner and a QWERTY one may share a box.
* A person typing is not a scanner: a scan whose mean key interval is above
  ``max_key_interval_ms`` (jQuery scannerDetection's 30 ms), or shorter than ``min_chars``, is
  rejected and logged without its text, so a keyboard matched by mistake never produces events.
* Hot-plug as Home Assistant's keyboard_remote does it: an inotify watch on ``/dev/input``
  (and on the ``by-id`` folder) for CREATE, ATTRIB (udev fixes permissions after creating the
  node) and DELETE, started *before* the first listing so no device slips between the two.
  While the device is absent the driver is ``offline`` and relists only when the folder
  changed (or every ``RESCAN_SECONDS`` as a safety net), so an idle gateway opens nothing.
* A device removed mid-code raises ``DeviceUnavailable``; the partial code is discarded with
  the session's decoder. Shutdown order: ungrab, remove the reader, close, then the task is
  cancelled by the daemon.
* Opening a node and reading its events go through ``open_node`` (a class attribute), so tests
  feed real ``evdev.InputEvent`` objects through this very driver without ``/dev/uinput``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fnmatch
import os
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from pydantic import Field, field_validator, model_validator

from gatewayd.drivers import DeviceSpec, Driver, DriverOptions, RawInput
from gatewayd.errors import DeviceFailed, DeviceUnavailable
from gatewayd.hookspecs import hookimpl
from gatewayd.plugins.msr_reader import DEFAULT_RULES, CardNumberRuleOption, decode_swipes
from gatewayd.protocols.keymap import TERMINATORS, KeyDecoder, KeymapError, is_machine_typed
from gatewayd.protocols.tokens import Method, strip_aim_prefix

EV_KEY = 1
RESCAN_SECONDS = 10.0
UNGRAB_TIMEOUT = 1.0


class KeyboardWedgeOptions(DriverOptions):
    """Which node (``path`` wins; else every given one of ``usb`` and ``name`` must match)."""

    path: str | None = Field(default=None, description="/dev/input/by-id/…-event-kbd")
    usb: str | None = Field(default=None, description="vvvv:pppp, or vvvv:* for any product")
    name: str | None = Field(default=None, description="device name, glob allowed")
    input_dir: str = "/dev/input"
    layout: Literal["us", "fr", "de"] = "us"
    terminator: Literal["enter", "kp_enter", "tab"] = "enter"
    max_key_interval_ms: float = Field(default=30.0, gt=0, le=1000)
    min_chars: int = Field(default=4, ge=1, le=256)
    max_chars: int = Field(default=1024, ge=16, le=65536)
    grab: bool = True
    aim: Literal["keep", "strip"] = "keep"
    prefix: str = ""
    suffix: str = ""
    decode: Literal["text", "msr"] = "text"
    card_number: tuple[CardNumberRuleOption, ...] = Field(default=DEFAULT_RULES, min_length=1)
    method: Method | None = None

    @field_validator("usb")
    @classmethod
    def _vid_pid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        vid, sep, pid = value.lower().partition(":")
        try:
            int(vid, 16)
            if pid != "*":
                int(pid, 16)
        except ValueError:
            raise ValueError(f"{value!r}: expected vvvv:pppp in hex (or vvvv:*)") from None
        if not sep or len(vid) != 4 or (pid != "*" and len(pid) != 4):
            raise ValueError(f"{value!r}: expected vvvv:pppp in hex (or vvvv:*)")
        return f"{vid}:{pid}"

    @model_validator(mode="after")
    def _some_selector(self) -> KeyboardWedgeOptions:
        if not (self.path or self.usb or self.name):
            raise ValueError("one of path, usb or name is required to pick the input device")
        return self

    def matches(self, name: str, vendor: int, product: int) -> bool:
        if self.usb is not None:
            vid, _, pid = self.usb.partition(":")
            if int(vid, 16) != vendor or (pid != "*" and int(pid, 16) != product):
                return False
        return self.name is None or fnmatch.fnmatchcase(name, self.name)


class InputNode(Protocol):
    """What the driver needs of an ``evdev.InputDevice`` (and what test doubles provide)."""

    path: str
    name: str
    info: Any  # .vendor, .product

    def fileno(self) -> int: ...
    def capabilities(self) -> dict[int, list[int]]: ...
    def grab(self) -> None: ...
    def ungrab(self) -> None: ...
    def close(self) -> None: ...
    def read(self) -> Iterable[Any]: ...  # evdev.InputEvent; BlockingIOError when none


def open_evdev(path: str) -> InputNode:
    import evdev  # the "devices" extra: only needed once a keyboard wedge is configured

    return cast(InputNode, evdev.InputDevice(path))


# -- inotify (ctypes: three libc calls, no extra dependency) ---------------------------------

IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_ISDIR = 0x100, 0x200, 0x400, 0x40000000
_WATCH_MASK = IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
_EVENT = struct.Struct("iIII")


class Inotify:
    """A non-blocking inotify descriptor; ``read()`` returns ``(folder, mask, name)`` triples."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd: int = fd
        self._folders: dict[int, str] = {}

    def watch(self, folder: str) -> bool:
        """Watch a folder (idempotent); False when it does not exist (yet)."""
        if folder in self._folders.values():
            return True
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(folder), _WATCH_MASK)
        if wd < 0:
            return False
        self._folders[wd] = folder
        return True

    def read(self) -> list[tuple[str, int, str]]:
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return []
        out, offset = [], 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            folder = self._folders.get(wd)
            if folder is None:
                continue
            if mask & IN_DELETE_SELF:
                self._folders.pop(wd, None)
            out.append((folder, mask, os.fsdecode(raw.rstrip(b"\0"))))
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _event_number(path: Path) -> int:
    digits = path.name.removeprefix("event")
    return int(digits) if digits.isdigit() else 1 << 30


class KeyboardWedgeDriver(Driver):
    """One keyboard-wedge input node: scans in, ``RawInput`` out."""

    name = "keyboard_wedge"
    method = Method.BARCODE
    options = KeyboardWedgeOptions
    open_node: Callable[[str], InputNode] = staticmethod(open_evdev)

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec)
        assert isinstance(spec.options, KeyboardWedgeOptions)
        self.opts: KeyboardWedgeOptions = spec.options
        default = Method.MAGSTRIPE if self.opts.decode == "msr" else Method.BARCODE
        self.method = self.opts.method or default  # type: ignore[misc]
        self._node: InputNode | None = None
        self._fd = -1
        self._events: deque[Any] = deque()
        self._error: Exception | None = None
        self._wake = asyncio.Event()
        self._inotify: Inotify | None = None
        self._dirty = True
        self._next_rescan = 0.0
        self._absent = "no matching input device"

    # -- hot-plug ------------------------------------------------------------------------

    def _watch_folders(self) -> list[str]:
        folders = [self.opts.input_dir]
        if self.opts.path:
            folders.append(os.path.dirname(os.path.abspath(self.opts.path)))
        return folders

    def _ensure_watcher(self) -> bool:
        """Start the inotify watch before any listing; re-add folders created since.

        False when ``input_dir`` itself does not exist (a container without input devices).
        """
        if self._inotify is None:
            self._inotify = Inotify()
            asyncio.get_running_loop().add_reader(self._inotify.fd, self._on_inotify)
        watched = [self._inotify.watch(folder) for folder in self._watch_folders()]
        return watched[0]

    def _on_inotify(self) -> None:
        if self._inotify is None:
            return
        node = self._node
        current = {os.path.abspath(self.opts.path)} if self.opts.path else set()
        if node is not None:
            current.add(os.path.abspath(node.path))
        for folder, mask, name in self._inotify.read():
            full = os.path.join(folder, name)
            if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                self._inotify.watch(full)  # by-id appearing after /dev/input was watched
            self._dirty = True
            if node is not None and mask & (IN_DELETE | IN_MOVED_FROM) and full in current:
                self._fail(DeviceUnavailable(f"{full}: removed"))

    # -- the driver ----------------------------------------------------------------------

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._ensure_watcher():
            raise DeviceUnavailable(f"{self.opts.input_dir}: missing")
        now = time.monotonic()
        if not self._dirty and now < self._next_rescan:
            raise DeviceUnavailable(self._absent)
        self._dirty, self._next_rescan = False, now + RESCAN_SECONDS
        node = await loop.run_in_executor(None, self._find)
        if node is None:
            raise DeviceUnavailable(self._absent)
        if self.opts.grab:
            try:
                await loop.run_in_executor(None, node.grab)
            except OSError as exc:
                node.close()
                raise DeviceFailed(f"{node.path}: cannot grab: {exc}") from exc
        self._node, self._fd = node, node.fileno()
        self._events.clear()
        self._error = None
        self._wake.clear()
        loop.add_reader(self._fd, self._on_readable)
        self.log.info("input_device_opened", path=node.path, name=node.name)

    def _find(self) -> InputNode | None:
        """The node to read (in an executor: opens device nodes), or None with ``_absent`` set."""
        if self.opts.path:
            real = os.path.realpath(self.opts.path)
            try:
                return type(self).open_node(real)
            except OSError as exc:
                self._absent = f"{self.opts.path}: {exc.strerror or exc}"
                return None
        folder = Path(self.opts.input_dir)
        terminator = TERMINATORS[self.opts.terminator]
        for path in sorted(folder.glob("event*"), key=_event_number):
            try:
                node = type(self).open_node(str(path))
            except OSError:
                continue  # not ours to read (permissions not fixed yet: ATTRIB will follow)
            keys = node.capabilities().get(EV_KEY, [])
            if terminator in keys and self.opts.matches(
                node.name, node.info.vendor, node.info.product
            ):
                return node
            node.close()
        wanted = " ".join(
            f"{k}={v}" for k, v in (("usb", self.opts.usb), ("name", self.opts.name)) if v
        )
        self._absent = f"no input device in {folder} matches {wanted}"
        return None

    def _on_readable(self) -> None:
        node = self._node
        if node is None:
            return
        try:
            self._events.extend(node.read())
        except BlockingIOError:
            return
        except OSError as exc:  # ENODEV: unplugged
            self._fail(DeviceUnavailable(f"{node.path}: {exc.strerror or exc}"))
            return
        self._wake.set()

    def _fail(self, error: Exception) -> None:
        if self._fd >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
        self._error = self._error or error
        self._wake.set()

    async def _read(self) -> AsyncIterator[RawInput]:
        decoder = KeyDecoder(self.opts.layout, self.opts.terminator, max_chars=self.opts.max_chars)
        max_interval = self.opts.max_key_interval_ms / 1000
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._events:
                event = self._events.popleft()
                if event.type != EV_KEY:
                    continue
                try:
                    scan = decoder.feed(event.code, event.value, event.timestamp())
                except KeymapError as exc:
                    self.log.warning("scan_discarded", reason=str(exc))
                    continue
                if scan is None:
                    continue
                if not is_machine_typed(
                    scan, max_interval=max_interval, min_chars=self.opts.min_chars
                ):
                    self.log.info(
                        "human_typing_rejected",
                        chars=scan.chars,
                        mean_key_interval_ms=round(scan.mean_interval * 1000, 1),
                    )
                    continue
                for raw in self._inputs(scan.text):
                    yield raw
            if self._error is not None:
                if decoder.pending:
                    self.log.info("partial_scan_discarded", chars=len(decoder.pending))
                raise self._error
            if self._node is None:
                return  # closed by stop()

    def _inputs(self, text: str) -> list[RawInput]:
        if self.opts.prefix:
            text = text.removeprefix(self.opts.prefix)
        if self.opts.suffix:
            text = text.removesuffix(self.opts.suffix)
        if self.opts.aim == "strip":
            text = strip_aim_prefix(text)[1]
        if not text:
            return []
        if self.opts.decode == "msr":
            return decode_swipes(text, self.opts.card_number, self.log)
        return [RawInput(text=text)]

    async def _close(self) -> None:
        """Ungrab, stop reading, close; the read loop wakes and ends (or is cancelled next)."""
        node, fd = self._node, self._fd
        self._node, self._fd = None, -1
        if node is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(fd)
        if self.opts.grab:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(loop.run_in_executor(None, node.ungrab), UNGRAB_TIMEOUT)
        with contextlib.suppress(Exception):
            node.close()
        self._wake.set()

    async def stop(self) -> None:
        await super().stop()
        inotify, self._inotify = self._inotify, None
        if inotify is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(inotify.fd)
            inotify.close()


@hookimpl
def gatewayd_driver_classes() -> list[type[Driver]]:
    return [KeyboardWedgeDriver]
