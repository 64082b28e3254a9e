"""Device profiles: one TOML file per device model in ``firmware-profiles/``.

A profile is data, not code: how to recognise the device (USB VID:PID, product string,
``/dev/*/by-id`` glob, PC/SC reader name), which driver reads it, and that driver's default
options (serial settings, framing, prefixes, keyboard layout, init commands, quirks). A device
entry names a profile and overrides any option. Facts not verified for a model are listed in
``unknown`` rather than invented.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gatewayd.config import describe_errors
from gatewayd.errors import ConfigError

Family = Literal[
    "barcode_scanner",
    "msr",
    "id_card_reader",
    "face_terminal",
    "palm_terminal",
    "caller_id_modem",
    "ic_reader",
    "printer",
]


class MatchRules(BaseModel):
    """How discovery recognises the device. Any one rule matching is enough."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    usb: tuple[str, ...] = ()
    product: str | None = None
    by_id: str | None = None
    pcsc_reader: str | None = None

    @field_validator("usb")
    @classmethod
    def _vid_pid(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            vid, sep, pid = value.partition(":")
            if not sep or len(vid) != 4 or len(pid) != 4:
                raise ValueError(f"{value!r}: expected VVVV:PPPP in hex")
            int(vid, 16), int(pid, 16)
        return tuple(v.lower() for v in values)


class Profile(BaseModel):
    """One device model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    vendor: str
    model: str
    family: Family
    driver: str
    transport: Literal["serial", "evdev", "pcsc", "usb", "tcp", "hid"] | None = None
    match: MatchRules = MatchRules()
    options: dict[str, Any] = Field(default_factory=dict)
    notes: str = ""
    unknown: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


def default_profiles_dir() -> Path:
    """``firmware-profiles/`` beside the source tree, else the installed data folder."""
    here = Path(__file__).resolve().parent.parent / "firmware-profiles"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "gatewayd" / "firmware-profiles"


def load_profile(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read: {exc}"]) from None
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), describe_errors(exc)) from None
    if profile.id != path.stem:
        raise ConfigError(str(path), [f"id: {profile.id!r} must equal the file name"])
    return profile


def load_profiles(directory: Path | None = None) -> dict[str, Profile]:
    """Every profile of a folder, by id. Raises ``ConfigError`` listing every bad file."""
    directory = directory or default_profiles_dir()
    profiles: dict[str, Profile] = {}
    problems: list[str] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            profiles[path.stem] = load_profile(path)
        except ConfigError as exc:
            problems.extend(f"{path.name}: {p}" for p in exc.problems)
    if problems:
        raise ConfigError(str(directory), problems)
    return profiles


def merged_options(profile: Profile | None, device_options: Mapping[str, Any]) -> dict[str, Any]:
    """Profile defaults overridden by the device entry's own keys."""
    return {**(profile.options if profile else {}), **device_options}


def check_profiles(directory: Path | None, out: TextIO, err: TextIO) -> int:
    """``gatewayd profiles check``: schema and driver options of every profile; exit 2 if bad."""
    from gatewayd.plugin_manager import Plugins

    directory = directory or default_profiles_dir()
    plugins = Plugins()
    plugins.load()
    drivers = plugins.driver_classes()
    failures = 0
    paths = sorted(directory.glob("*.toml"))
    for path in paths:
        try:
            profile = load_profile(path)
            cls = drivers.get(profile.driver)
            if cls is None:
                raise ConfigError(str(path), [f"driver: unknown driver {profile.driver!r}"])
            problems = option_problems(profile, cls.options)
            if problems:
                raise ConfigError(str(path), problems)
        except ConfigError as exc:
            failures += 1
            for problem in exc.problems:
                print(f"{exc.source}: {problem}", file=err)
            continue
        print(
            f"{path.name}: ok ({profile.vendor} {profile.model}, driver {profile.driver})", file=out
        )
    if not paths:
        print(f"{directory}: no profiles", file=err)
        return 2
    return 2 if failures else 0


def option_problems(profile: Profile, options_model: type[BaseModel]) -> list[str]:
    """What is wrong with a profile's options. Keys a profile cannot know (``port``,
    ``connection``…) may be left to each device entry, so a missing key is not a problem."""
    try:
        options_model.model_validate(profile.options)
    except ValidationError as exc:
        relevant = [e for e in exc.errors() if e["type"] != "missing"]
        if relevant:
            return describe_errors(
                ValidationError.from_exception_data(exc.title, relevant),  # type: ignore[arg-type]
                prefix=("options",),
            )
    return []
