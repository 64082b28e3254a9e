"""What is attached, and which firmware profile matches it: ``gatewayd devices``.

Looks at ``/dev/serial/by-id``, ``/dev/input/by-id``, USB devices in sysfs and PC/SC readers,
and matches each against the profiles' ``[match]`` rules (USB VID:PID, product string,
by-id glob, PC/SC reader name). What matches nothing is listed too, so a field engineer sees
what lacks support. The roots are parameters so tests can hand in a folder tree.
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from gatewayd.profiles import Profile


@dataclass(frozen=True, slots=True)
class Found:
    kind: str  # serial, input, usb, pcsc
    path: str  # device node, sysfs path or reader name
    usb: str | None = None  # vvvv:pppp
    product: str | None = None
    manufacturer: str | None = None
    profile: str | None = None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _usb_parent(sys_root: Path, node: Path) -> Path | None:
    """The sysfs USB device (with idVendor) above a tty or input node."""
    name = node.resolve().name if node.is_symlink() else node.name
    for klass in ("tty", "input"):
        device = sys_root / "class" / klass / name / "device"
        if device.exists():
            current = device.resolve()
            while current != current.parent:
                if (current / "idVendor").exists():
                    return current
                current = current.parent
    return None


def _usb_info(usb_dir: Path | None) -> tuple[str | None, str | None, str | None]:
    if usb_dir is None:
        return None, None, None
    vid, pid = _read(usb_dir / "idVendor"), _read(usb_dir / "idProduct")
    usb = f"{vid}:{pid}".lower() if vid and pid else None
    return usb, _read(usb_dir / "product"), _read(usb_dir / "manufacturer")


def scan(
    dev_root: Path = Path("/dev"),
    sys_root: Path = Path("/sys"),
    pcsc_readers: list[str] | None = None,
) -> list[Found]:
    found: list[Found] = []
    claimed_usb: set[str] = set()
    for kind, folder in (
        ("serial", dev_root / "serial" / "by-id"),
        ("input", dev_root / "input" / "by-id"),
    ):
        if not folder.is_dir():
            continue
        for link in sorted(folder.iterdir()):
            usb_dir = _usb_parent(sys_root, link)
            usb, product, manufacturer = _usb_info(usb_dir)
            if usb_dir is not None:
                claimed_usb.add(str(usb_dir.resolve()))
            found.append(Found(kind, str(link), usb, product, manufacturer))
    usb_root = sys_root / "bus" / "usb" / "devices"
    if usb_root.is_dir():
        for entry in sorted(usb_root.iterdir()):
            if not (entry / "idVendor").exists() or str(entry.resolve()) in claimed_usb:
                continue
            if _read(entry / "bDeviceClass") == "09":  # hubs are not devices to drive
                continue
            usb, product, manufacturer = _usb_info(entry)
            found.append(Found("usb", str(entry), usb, product, manufacturer))
    for reader in pcsc_readers if pcsc_readers is not None else list_pcsc_readers():
        found.append(Found("pcsc", reader, product=reader))
    return found


def list_pcsc_readers() -> list[str]:
    """PC/SC reader names, or none when pyscard or pcscd is missing."""
    try:
        from smartcard.System import readers

        return [str(r) for r in readers()]
    except Exception:  # noqa: BLE001 - no PC/SC here is a normal answer
        return []


def match(item: Found, profiles: dict[str, Profile]) -> str | None:
    """The first profile (by id) whose rules match ``item``."""
    for profile_id in sorted(profiles):
        rules = profiles[profile_id].match
        if item.usb and item.usb in rules.usb:
            return profile_id
        if (
            rules.by_id
            and item.kind in ("serial", "input")
            and fnmatch.fnmatch(os.path.basename(item.path), rules.by_id)
        ):
            return profile_id
        if (
            rules.pcsc_reader
            and item.kind == "pcsc"
            and fnmatch.fnmatch(item.path, rules.pcsc_reader)
        ):
            return profile_id
        if rules.product and item.product and fnmatch.fnmatch(item.product, rules.product):
            return profile_id
    return None


def discover(profiles: dict[str, Profile], **roots: object) -> list[Found]:
    items = scan(**roots)  # type: ignore[arg-type]
    return [Found(**{**asdict(i), "profile": match(i, profiles)}) for i in items]


def print_devices(items: list[Found], out: TextIO, as_json: bool) -> None:
    if as_json:
        print(json.dumps([asdict(i) for i in items], indent=2, ensure_ascii=False), file=out)
        return
    matched = [i for i in items if i.profile]
    unmatched = [i for i in items if not i.profile]
    print(f"{len(matched)} supported, {len(unmatched)} without a profile", file=out)
    for title, group in (("supported", matched), ("no profile", unmatched)):
        if not group:
            continue
        print(f"\n{title}:", file=out)
        for item in group:
            ids = f" [{item.usb}]" if item.usb else ""
            label = f" {item.manufacturer or ''} {item.product or ''}".rstrip()
            profile = f" -> {item.profile}" if item.profile else ""
            print(f"  {item.kind:<6} {item.path}{ids}{label}{profile}", file=out)
