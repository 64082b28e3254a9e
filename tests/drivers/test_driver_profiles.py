"""The device profiles of this issue: valid for their drivers, honest about what is unknown."""

from __future__ import annotations

import io

import pytest

from gatewayd.plugin_manager import Plugins
from gatewayd.profiles import check_profiles, load_profiles

MINE = {
    "scanner-honeywell-voyager-1200g": ("barcode_scanner", "keyboard_wedge"),
    "scanner-zebra-ds2208": ("barcode_scanner", "keyboard_wedge"),
    "scanner-newland-nls-hr22": ("barcode_scanner", "keyboard_wedge"),
    "scanner-newland-nls-hr22-cdc": ("barcode_scanner", "serial_scanner"),
    "scanner-generic-rs232": ("barcode_scanner", "serial_scanner"),
    "msr-magtek-21040140": ("msr", "keyboard_wedge"),
    "msr-generic-serial": ("msr", "msr_reader"),
    "idcard-routon-cvr100": ("id_card_reader", "samv_reader"),
    "idcard-shensi-ss628": ("id_card_reader", "samv_reader"),
    "face-wechat-qingwa": ("face_terminal", "serial_scanner"),
    "face-alipay-dragonfly": ("face_terminal", "serial_scanner"),
    "palm-wechat-palm": ("palm_terminal", "serial_scanner"),
    "modem-conexant-cx93010": ("caller_id_modem", "callerid_modem"),
    "modem-usr-5637": ("caller_id_modem", "callerid_modem"),
}


def test_every_profile_checks() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert check_profiles(None, out, err) == 0, err.getvalue()
    assert len(out.getvalue().splitlines()) >= len(MINE) + 4


@pytest.mark.parametrize("profile_id", sorted(MINE))
def test_profile_family_driver_and_unknowns(profile_id: str) -> None:
    profile = load_profiles()[profile_id]
    assert (profile.family, profile.driver) == MINE[profile_id]
    assert profile.unknown, "every model has facts nobody verified here: list them"
    assert profile.notes.strip()
    drivers = Plugins()
    drivers.load()
    options = drivers.driver_classes()[profile.driver].options
    example = dict(profile.options)
    if "port" in options.model_fields:
        example.setdefault("port", "/dev/null")  # the one thing a profile cannot know
    options.model_validate(example)  # the profile's defaults are valid driver options


def test_terminal_profiles_set_their_method() -> None:
    profiles = load_profiles()
    assert profiles["face-wechat-qingwa"].options["method"] == "face"
    assert profiles["face-alipay-dragonfly"].options["method"] == "face"
    assert profiles["palm-wechat-palm"].options["method"] == "palm"
    assert profiles["msr-magtek-21040140"].options["decode"] == "msr"
