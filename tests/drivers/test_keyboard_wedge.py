"""Keyboard-wedge scanners: real ``evdev.InputEvent`` objects through the real driver.

There is no /dev/uinput here, so only the two device-facing calls are doubles: opening a node
(``KeyboardWedgeDriver.open_node``) and the node's ``read()``, which hands out the events a
test pushed, wakes the event loop through a real pipe, and raises ENODEV once unplugged. The
device folder is a temporary directory watched with real inotify.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from evdev import InputEvent, ecodes
from structlog.testing import capture_logs

from gatewayd.config import settings_from_dict
from gatewayd.drivers import DeviceSpec, RawInput
from gatewayd.events import DeviceState
from gatewayd.plugins.keyboard_wedge import KeyboardWedgeDriver, KeyboardWedgeOptions
from gatewayd.protocols.keymap import text_to_events
from gatewayd.simulators import demo_swipe
from tests.support.broker import Mosquitto
from tests.support.mqtt import subscribed
from tests.support.net import free_port

K = ecodes


def key_events(
    text: str, layout: str = "us", terminator: str = "enter", interval: float = 0.004
) -> list[InputEvent]:
    """What the kernel reports for a wedge typing ``text``: MSC_SCAN, EV_KEY and SYN_REPORT."""
    out: list[InputEvent] = []
    for key in text_to_events(text, layout, terminator, start=1_000.0, interval=interval):
        sec, usec = divmod(round(key.timestamp * 1_000_000), 1_000_000)
        out.append(InputEvent(sec, usec, K.EV_MSC, K.MSC_SCAN, 0x70000 + key.code))
        out.append(InputEvent(sec, usec, K.EV_KEY, key.code, key.value))
        out.append(InputEvent(sec, usec, K.EV_SYN, K.SYN_REPORT, 0))
    return out


def keys(*strokes: tuple[int, int], start: float = 2_000.0, step: float = 0.003) -> list:
    """Raw (code, value) strokes as InputEvents ``step`` seconds apart."""
    out = []
    for index, (code, value) in enumerate(strokes):
        sec, usec = divmod(round((start + index * step) * 1_000_000), 1_000_000)
        out.append(InputEvent(sec, usec, K.EV_KEY, code, value))
    return out


def tap(code: int) -> list[tuple[int, int]]:
    return [(code, 1), (code, 0)]


class FakeDevice:
    """One physical device; each ``open`` is a new handle, as with real device nodes."""

    def __init__(self, name: str, vendor: int, product: int) -> None:
        self.name, self.vendor, self.product = name, vendor, product
        self.handles: list[FakeHandle] = []
        self.calls: list[str] = []
        self.gone = False

    def open(self, path: str) -> FakeHandle:
        handle = FakeHandle(self, path)
        self.handles.append(handle)
        return handle

    def push(self, events: list[InputEvent]) -> None:
        for handle in self.handles:
            if not handle.closed:
                handle.events.extend(events)
                os.write(handle.wakeup, b"!")

    def unplug(self) -> None:
        self.gone = True
        for handle in self.handles:
            if not handle.closed:
                os.write(handle.wakeup, b"!")


class FakeHandle:
    def __init__(self, device: FakeDevice, path: str) -> None:
        self.device, self.path, self.name = device, path, device.name
        self.info = SimpleNamespace(vendor=device.vendor, product=device.product)
        self.events: deque[InputEvent] = deque()
        self._fd, self.wakeup = os.pipe()
        os.set_blocking(self._fd, False)
        self.closed = False

    def fileno(self) -> int:
        return self._fd

    def capabilities(self) -> dict[int, list[int]]:
        return {K.EV_KEY: list(range(1, 128)), K.EV_MSC: [K.MSC_SCAN]}

    def grab(self) -> None:
        self.device.calls.append("grab")

    def ungrab(self) -> None:
        self.device.calls.append("ungrab")

    def close(self) -> None:
        if not self.closed:
            self.device.calls.append("close")
            self.closed = True
            os.close(self._fd)
            os.close(self.wakeup)

    def read(self) -> Iterator[InputEvent]:
        if self.device.gone:
            raise OSError(errno.ENODEV, "No such device")
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 4096)
        if not self.events:
            raise BlockingIOError(errno.EAGAIN, "no events")
        events, self.events = list(self.events), deque()
        return iter(events)


class InputFolder:
    """A fake /dev/input: files for inotify, devices behind them for ``open_node``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(exist_ok=True)
        self.devices: dict[str, FakeDevice] = {}

    def open_node(self, path: str) -> FakeHandle:
        device = self.devices.get(os.path.realpath(path))
        if device is None or device.gone or not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        return device.open(path)

    def add(
        self,
        node: str = "event3",
        name: str = "Honeywell 1200g",
        usb: tuple[int, int] = (0x0C2E, 0x0B61),
    ) -> FakeDevice:
        device = FakeDevice(name, *usb)
        path = self.root / node
        self.devices[str(path)] = device
        path.touch()  # IN_CREATE, as devtmpfs does
        os.chmod(path, 0o660)  # IN_ATTRIB, as udev does when it fixes the permissions
        return device

    def remove(self, node: str = "event3") -> None:
        device = self.devices.pop(str(self.root / node))
        (self.root / node).unlink()
        device.unplug()


class Harness:
    def __init__(self, folder: InputFolder, **options: Any) -> None:
        self.folder = folder
        opts = KeyboardWedgeOptions(input_dir=str(folder.root), **options)
        spec = DeviceSpec(
            id="wedge1", terminal="pos1", driver="keyboard_wedge", profile=None, options=opts
        )
        self.driver = KeyboardWedgeDriver(spec)
        self.inputs: asyncio.Queue[RawInput] = asyncio.Queue()
        self.states: list[DeviceState] = []
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self.driver.run(self._on_input, self._on_state))

    def _on_input(self, device: str, raw: RawInput) -> None:
        self.inputs.put_nowait(raw)

    def _on_state(self, device: str, state: DeviceState, error: str | None) -> None:
        self.states.append(state)
        self._changed.set()

    async def wait_state(self, state: DeviceState, timeout: float = 2.0) -> None:
        async with asyncio.timeout(timeout):
            while self.driver.state is not state:
                self._changed.clear()
                await self._changed.wait()

    async def text(self, timeout: float = 2.0) -> str:
        raw = await asyncio.wait_for(self.inputs.get(), timeout)
        return raw.text

    async def nothing(self, seconds: float = 0.3) -> None:
        await asyncio.sleep(seconds)
        assert self.inputs.empty(), self.inputs.get_nowait()

    async def close(self) -> None:
        await self.driver.stop()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> InputFolder:
    inputs = InputFolder(tmp_path / "input")
    monkeypatch.setattr(KeyboardWedgeDriver, "open_node", staticmethod(inputs.open_node))
    return inputs


@contextlib.asynccontextmanager
async def running(folder: InputFolder, **options: Any) -> AsyncIterator[Harness]:
    options.setdefault("usb", "0c2e:0b61")
    harness = Harness(folder, **options)
    try:
        yield harness
    finally:
        await harness.close()


async def test_shift_and_plain_keys_us(folder: InputFolder) -> None:
    device = folder.add()
    async with running(folder) as wedge:
        await wedge.wait_state(DeviceState.ONLINE)
        device.push(key_events("Hello-World_123!"))
        assert await wedge.text() == "Hello-World_123!"
    assert device.calls == ["grab", "ungrab", "close"]  # ungrab before close on shutdown


async def test_capslock_is_a_per_device_toggle(folder: InputFolder) -> None:
    device = folder.add()
    async with running(folder) as wedge:
        await wedge.wait_state(DeviceState.ONLINE)
        a, b, one = K.KEY_A, K.KEY_B, K.KEY_1
        strokes = [
            *tap(K.KEY_CAPSLOCK),
            *tap(a),
            (K.KEY_LEFTSHIFT, 1),
            *tap(b),  # Shift under CapsLock: lower case
            *tap(one),  # digits ignore CapsLock: Shift gives "!"
            (K.KEY_LEFTSHIFT, 0),
            *tap(a),
            *tap(one),
            *tap(K.KEY_CAPSLOCK),
            *tap(a),
            *tap(K.KEY_ENTER),
        ]
        device.push(keys(*strokes))
        assert await wedge.text() == "Ab!A1a"


@pytest.mark.parametrize(
    ("layout", "text"),
    [("fr", "AZERTY-qwerty@1234é"), ("de", "QWERTZ-yz@ÄÖÜ-ß#1234")],
)
async def test_european_layouts(folder: InputFolder, layout: str, text: str) -> None:
    device = folder.add()
    async with running(folder, layout=layout) as wedge:
        await wedge.wait_state(DeviceState.ONLINE)
        device.push(key_events(text, layout))
        assert await wedge.text() == text
        device.push(key_events("qwertyz", "us"))  # keys as a us layout would send them
        assert await wedge.text() != "qwertyz"


@pytest.mark.parametrize("terminator", ["enter", "kp_enter", "tab"])
async def test_each_terminator(folder: InputFolder, terminator: str) -> None:
    device = folder.add()
    async with running(folder, terminator=terminator) as wedge:
        await wedge.wait_state(DeviceState.ONLINE)
        device.push(key_events("6901234567892", terminator=terminator))
        assert await wedge.text() == "6901234567892"
        other = "tab" if terminator != "tab" else "enter"
        device.push(key_events("1111", terminator=other))  # not our terminator: no scan yet
        await wedge.nothing(0.1)


async def test_human_typing_is_rejected(folder: InputFolder) -> None:
    device = folder.add(name="AT Translated Set 2 keyboard")
    with capture_logs() as logs:
        async with running(folder, usb=None, name="AT*keyboard") as wedge:
            await wedge.wait_state(DeviceState.ONLINE)
            device.push(key_events("13800138000", interval=0.120))  # 120 ms a key: a person
            await wedge.nothing(0.3)
            device.push(key_events("ab", interval=0.002))  # fast, but shorter than min_chars
            await wedge.nothing(0.1)
            device.push(key_events("13800138000", interval=0.008))  # the gun, same device
            assert await wedge.text() == "13800138000"
    rejected = [e for e in logs if e["event"] == "human_typing_rejected"]
    assert [e["chars"] for e in rejected] == [11, 2]
    assert rejected[0]["mean_key_interval_ms"] == pytest.approx(120, abs=1)
    assert all("13800138000" not in str(e) for e in rejected)


async def test_removed_mid_code_discards_the_partial_code(folder: InputFolder) -> None:
    device = folder.add()
    async with running(folder) as wedge:
        await wedge.wait_state(DeviceState.ONLINE)
        events = key_events("134567890123456789")
        device.push(events[: len(events) // 2])
        await asyncio.sleep(0.05)
        device.unplug()  # read() raises ENODEV, the node stays for a moment
        await wedge.wait_state(DeviceState.OFFLINE, timeout=1)
        folder.remove()
        again = folder.add()
        await wedge.wait_state(DeviceState.ONLINE, timeout=1)
        again.push(events[len(events) // 2 :])  # the rest alone is not a scan of the whole
        first = await wedge.text()
        again.push(key_events("134567890123456789"))
        assert await wedge.text() == "134567890123456789"
    assert len(first) < 18 and "134567890123456789".endswith(first)  # no half-code glued on


async def test_hot_plug_by_inotify(folder: InputFolder) -> None:
    async with running(folder) as wedge:
        await wedge.wait_state(DeviceState.OFFLINE)
        folder.add("event0", name="Some Mouse", usb=(0x046D, 0xC077))  # not ours
        await asyncio.sleep(0.4)
        assert wedge.driver.state is DeviceState.OFFLINE
        device = folder.add("event7")
        await wedge.wait_state(DeviceState.ONLINE, timeout=1)
        device.push(key_events("13800138000"))
        assert await wedge.text() == "13800138000"
        (folder.root / "event7").unlink()  # udev removes the node: inotify DELETE
        await wedge.wait_state(DeviceState.OFFLINE, timeout=1)


async def test_by_id_path_wins(folder: InputFolder) -> None:
    folder.add("event2", name="Barcode A")
    b = folder.add("event5", name="Barcode B")
    by_id = folder.root / "by-id"
    by_id.mkdir()
    link = by_id / "usb-Honeywell_1200g-event-kbd"
    link.symlink_to("../event5")
    async with running(folder, path=str(link), usb="0c2e:*") as wedge:
        await wedge.wait_state(DeviceState.ONLINE)
        b.push(key_events("2222"))
        assert await wedge.text() == "2222"
        link.unlink()  # the by-id link goes first when udev removes a device
        await wedge.wait_state(DeviceState.OFFLINE, timeout=1)


async def test_aim_prefix_kept_or_stripped(folder: InputFolder) -> None:
    device = folder.add()
    async with running(folder) as wedge:
        await wedge.wait_state(DeviceState.ONLINE)
        device.push(key_events("]E06901234567892"))
        assert await wedge.text() == "]E06901234567892"  # the classifier files it as aim
    async with running(folder, aim="strip") as wedge:
        await wedge.wait_state(DeviceState.ONLINE)
        device.push(key_events("]E06901234567892"))
        assert await wedge.text() == "6901234567892"


async def test_magstripe_reader_as_keyboard(folder: InputFolder) -> None:
    device = folder.add(name="Mag-Tek USB Swipe Reader", usb=(0x0801, 0x0001))
    async with running(folder, usb="0801:0001", decode="msr") as wedge:
        assert wedge.driver.method == "magstripe"
        await wedge.wait_state(DeviceState.ONLINE)
        swipe = demo_swipe("8800001234567890").decode().rstrip("\r\n")
        device.push(key_events(swipe))
        raw = await asyncio.wait_for(wedge.inputs.get(), 2)
    assert raw.token is not None
    assert raw.token.value == "8800001234567890"
    assert raw.token.extra == {"track": 2, "check_digit": False}


def test_options_need_a_selector() -> None:
    with pytest.raises(ValueError, match="one of path, usb or name"):
        KeyboardWedgeOptions()
    with pytest.raises(ValueError, match="vvvv:pppp"):
        KeyboardWedgeOptions(usb="0c2e")


async def test_through_a_gateway_to_mqtt(
    tmp_path: Path, folder: InputFolder, broker: Mosquitto
) -> None:
    """The whole path in-process: evdev events → driver → classifier → Mosquitto → subscriber.

    It also checks the legacy 36-letter member code sent twice in one read (an over-sensitive
    scanner) arriving as one correct event.
    """
    from gatewayd.daemon import Gateway

    device = folder.add()
    settings = settings_from_dict(
        {
            "gateway": {"id": "gw1", "store": "s1", "state_dir": str(tmp_path / "state")},
            "mqtt": {"url": broker.url},
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "devices": [
                {
                    "id": "wedge1",
                    "driver": "keyboard_wedge",
                    "terminal": "pos1",
                    "usb": "0c2e:0b61",
                    "input_dir": str(folder.root),
                }
            ],
        },
        source="<test>",
    )
    gateway = Gateway(settings)
    run = asyncio.create_task(gateway.run(install_signals=False))
    legacy = "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJ"
    try:
        async with subscribed(broker.port, "gatewayd/v1/s1/terminals/+/identify") as sub:
            async with asyncio.timeout(5):
                while gateway.devices["wedge1"].state is not DeviceState.ONLINE:
                    await asyncio.sleep(0.02)
            device.push(key_events("134567890123456789"))
            first = (await sub.get()).json()
            device.push(key_events(legacy + legacy, interval=0.002))
            second = (await sub.get()).json()
            assert await sub.drain(0.3) == []
    finally:
        gateway.request_stop()
        await run
    assert first["method"] == "barcode"
    assert first["device"] == "wedge1"
    assert first["token"] == {"kind": "wechat_payment_code", "value": "134567890123456789"}
    assert second["token"] == {"kind": "legacy_member_code", "value": legacy}
    assert device.calls[-2:] == ["ungrab", "close"]
