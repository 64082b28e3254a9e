"""Discovery over a device tree laid out like /dev and /sys (no USB bus exists here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gatewayd.discovery import discover, print_devices
from gatewayd.profiles import MatchRules, Profile


def usb_device(sys_root: Path, name: str, vid: str, pid: str, product: str) -> Path:
    device = sys_root / "devices" / "pci0000:00" / "usb1" / name
    device.mkdir(parents=True)
    (device / "idVendor").write_text(vid + "\n")
    (device / "idProduct").write_text(pid + "\n")
    (device / "product").write_text(product + "\n")
    (device / "manufacturer").write_text("Maker\n")
    (device / "bDeviceClass").write_text("00\n")
    bus = sys_root / "bus" / "usb" / "devices"
    bus.mkdir(parents=True, exist_ok=True)
    os.symlink(device, bus / name)
    return device


def tty(sys_root: Path, dev_root: Path, usb: Path, node: str, by_id: str) -> None:
    interface = usb / f"{usb.name}:1.0" / "tty" / node
    interface.mkdir(parents=True)
    klass = sys_root / "class" / "tty" / node
    klass.mkdir(parents=True)
    os.symlink(usb / f"{usb.name}:1.0", klass / "device")
    dev_root.mkdir(parents=True, exist_ok=True)
    (dev_root / node).write_text("")
    folder = dev_root / "serial" / "by-id"
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink(dev_root / node, folder / by_id)


def profile(pid: str, **match: object) -> Profile:
    return Profile(
        id=pid,
        vendor="v",
        model="m",
        family="barcode_scanner",
        driver="serial_scanner",
        match=MatchRules(**match),
    )


def test_devices_are_matched_to_profiles(tmp_path: Path, capsys) -> None:
    sys_root, dev_root = tmp_path / "sys", tmp_path / "dev"
    scanner = usb_device(sys_root, "1-1", "0c2e", "0b61", "Honeywell 1200g")
    tty(sys_root, dev_root, scanner, "ttyACM0", "usb-Honeywell_1200g-if00")
    usb_device(sys_root, "1-2", "1a86", "7523", "USB Serial")  # nothing supports it
    usb_device(sys_root, "1-3", "072f", "2200", "ACR122U")
    profiles = {
        "honeywell": profile("honeywell", usb=("0c2e:0b61",)),
        "acr122u": profile("acr122u", usb=("072f:2200",)),
        "virtual": profile("virtual", pcsc_reader="Virtual PCD*"),
    }
    items = discover(
        profiles,
        dev_root=dev_root,
        sys_root=sys_root,
        pcsc_readers=["Virtual PCD 00 00", "Other Reader"],
    )
    by_path = {Path(i.path).name: i for i in items}
    serial = by_path["usb-Honeywell_1200g-if00"]
    assert (serial.kind, serial.usb, serial.profile) == ("serial", "0c2e:0b61", "honeywell")
    assert "1-1" not in by_path  # the scanner's USB device is listed once, as its port
    assert by_path["1-2"].profile is None and by_path["1-2"].usb == "1a86:7523"
    assert by_path["1-3"].profile == "acr122u"
    assert by_path["Virtual PCD 00 00"].profile == "virtual"
    assert by_path["Other Reader"].profile is None
    print_devices(items, __import__("sys").stdout, as_json=False)
    text = capsys.readouterr().out
    assert text.startswith("3 supported, 2 without a profile")
    assert "[1a86:7523]" in text.split("no profile:")[1]
    print_devices(items, __import__("sys").stdout, as_json=True)
    assert len(json.loads(capsys.readouterr().out)) == 5
