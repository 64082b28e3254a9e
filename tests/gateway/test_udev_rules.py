"""systemd/60-gatewayd.rules: well-formed udev rules that cover every profile's USB id.

systemd 252 (Debian 12) has no ``udevadm verify`` (it came in 253), so the syntax is checked
here: every line is a comment, blank, or ``KEY op "value"`` pairs joined by ", ", with the
operators udev allows for that key. Coverage is checked against the profiles as files, so a
profile added without its rule fails this test.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

from tests.support.gateway import ROOT

RULES = ROOT / "systemd" / "60-gatewayd.rules"
PROFILES = ROOT / "firmware-profiles"

PAIR = re.compile(r'([A-Z_]+)(?:\{([A-Za-z0-9_.-]+)\})?(==|!=|\+=|-=|:=|=)"([^"]*)"')
MATCH_OPS = {"==", "!="}
ASSIGN_OPS = {"=", "+=", "-=", ":="}
MATCH_ONLY = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "SUBSYSTEM", "SUBSYSTEMS", "DRIVER"}
MATCH_ONLY |= {"DRIVERS", "ATTRS", "TAGS", "TEST", "PROGRAM", "RESULT", "CONST"}
ASSIGN_ONLY = {"OWNER", "GROUP", "MODE", "RUN", "IMPORT", "GOTO", "LABEL", "OPTIONS"}
BOTH = {"ATTR", "ENV", "TAG", "NAME", "SYMLINK", "SYSCTL"}
WITH_ATTRIBUTE = {"ATTR", "ATTRS", "ENV", "RUN", "IMPORT", "TEST", "SYSCTL", "CONST"}
GROUPS = {"dialout", "input", "lp", "gatewayd"}


@dataclass(frozen=True)
class Rule:
    line: int
    pairs: tuple[tuple[str, str | None, str, str], ...]

    def values(self, key: str, attribute: str | None = None) -> list[str]:
        return [v for k, a, _op, v in self.pairs if k == key and a == attribute]

    def first(self, key: str, attribute: str | None = None) -> str | None:
        found = self.values(key, attribute)
        return found[0] if found else None

    @property
    def usb_id(self) -> str | None:
        vid = self.first("ATTR", "idVendor") or self.first("ATTRS", "idVendor")
        pid = self.first("ATTR", "idProduct") or self.first("ATTRS", "idProduct")
        return f"{vid}:{pid}" if vid and pid else None


def parse_rule(text: str, number: int) -> Rule:
    pairs = [(m[1], m[2], m[3], m[4]) for m in PAIR.finditer(text)]
    rebuilt = ", ".join(
        f'{key}{"{" + attr + "}" if attr else ""}{op}"{value}"' for key, attr, op, value in pairs
    )
    assert rebuilt == text, f"line {number}: not KEY op \"value\" pairs joined by ', ': {text}"
    for key, attribute, op, value in pairs:
        where = f"line {number}: {key}{op}"
        assert key in MATCH_ONLY | ASSIGN_ONLY | BOTH, f"{where}: unknown key"
        assert op in (
            MATCH_OPS
            if key in MATCH_ONLY
            else ASSIGN_OPS
            if key in ASSIGN_ONLY
            else (MATCH_OPS | ASSIGN_OPS)
        ), f"{where}: operator not allowed"
        assert (attribute is not None) == (key in WITH_ATTRIBUTE), f"{where}: {{attribute}}"
        if key == "MODE":
            assert re.fullmatch(r"0[0-7]{3}", value), f"{where}: mode {value!r}"
        if key == "GROUP":
            assert value in GROUPS, f"{where}: group {value!r}"
        if attribute in ("idVendor", "idProduct"):
            assert re.fullmatch(r"[0-9a-f]{4}", value), f"{where}: {value!r} is not lower hex"
    if not any(key == "LABEL" for key, *_ in pairs):
        assert any(op in MATCH_OPS for _k, _a, op, _v in pairs), f"line {number}: matches nothing"
    return Rule(number, tuple(pairs))


def load_rules() -> list[Rule]:
    rules = []
    for number, raw in enumerate(RULES.read_text(encoding="utf-8").splitlines(), 1):
        text = raw.strip()
        assert raw == raw.rstrip(), f"line {number}: trailing white space"
        assert not text.endswith("\\"), f"line {number}: continuation lines are not used"
        if text and not text.startswith("#"):
            rules.append(parse_rule(text, number))
    return rules


def profiles() -> dict[str, dict]:
    return {p.stem: tomllib.loads(p.read_text(encoding="utf-8")) for p in PROFILES.glob("*.toml")}


def test_every_line_is_a_comment_blank_or_a_well_formed_rule() -> None:
    rules = load_rules()
    assert rules, "no rules at all"
    labels = {r.first("LABEL") for r in rules} - {None}
    gotos = {v for r in rules for v in r.values("GOTO")}
    assert gotos <= labels, f"GOTO without LABEL: {gotos - labels}"


def test_the_parser_rejects_malformed_rules() -> None:
    bad = [
        'SUBSYSTEM=="usb" GROUP="lp"',  # no comma
        'SUBSYSTEM=="usb", GROUP=="lp"',  # GROUP cannot be matched
        'SUBSYSTEM="usb", GROUP="lp"',  # SUBSYSTEM cannot be assigned
        'SUBSYSTEM=="usb", ATTR{idVendor}=="04B8", MODE="0660"',  # sysfs writes lower case
        'SUBSYSTEM=="usb", MODE="660"',
        'GROUP="lp"',  # assigns to every device
    ]
    for text in bad:
        try:
            parse_rule(text, 0)
        except AssertionError:
            continue
        raise AssertionError(f"accepted: {text}")


def expected_effects(profile_id: str, profile: dict) -> tuple[str, set[str]] | None:
    """The node a profile's transport needs, and what its rules must assign to it."""
    link = f"SYMLINK+=gatewayd/{profile_id}"
    transport, family = profile.get("transport"), profile.get("family")
    if transport == "serial":
        return "tty", {link, "GROUP=dialout", "MODE=0660", "ENV{ID_MM_DEVICE_IGNORE}=1"}
    if transport == "evdev":
        keyboard = "IMPORT{builtin}=input_id"
        return "input", {
            link,
            keyboard,
            "GROUP=input",
            "MODE=0660",
            "ENV{LIBINPUT_IGNORE_DEVICE}=1",
        }
    if transport in ("usb", "hid"):
        return "usb", {link, f"GROUP={'lp' if family == 'printer' else 'gatewayd'}", "MODE=0660"}
    if transport == "pcsc":  # pcscd opens the reader with libccid's permissions: a name only
        return "usb", {link}
    return None


def assignments(rules: list[Rule]) -> set[str]:
    return {
        f"{key}{'{' + attr + '}' if attr else ''}{op}{value}"
        for rule in rules
        for key, attr, op, value in rule.pairs
        if op in ASSIGN_OPS
    }


def test_every_profile_usb_id_has_rules_for_its_transport() -> None:
    rules = load_rules()
    problems = []
    for profile_id, profile in profiles().items():
        for usb_id in (u.lower() for u in profile.get("match", {}).get("usb", [])):
            for_id = [r for r in rules if r.usb_id == usb_id]
            expected = expected_effects(profile_id, profile)
            if expected is None:
                if not for_id:
                    problems.append(f"{profile_id}: no rule for {usb_id}")
                continue
            subsystem, effects = expected
            found = assignments([r for r in for_id if r.first("SUBSYSTEM") == subsystem])
            if not effects <= found:
                missing = sorted(effects - found)
                problems.append(f"{profile_id}: {usb_id} SUBSYSTEM=={subsystem} lacks {missing}")
    assert problems == [], f"add to {RULES.name}: {problems}"


def test_keyboard_nodes_are_named_after_input_id_ran() -> None:
    rules = load_rules()
    for index, rule in enumerate(rules):
        if rule.first("ENV", "ID_INPUT_KEYBOARD") is None:
            continue
        earlier = assignments([r for r in rules[:index] if r.usb_id == rule.usb_id])
        assert "IMPORT{builtin}=input_id" in earlier, f"line {rule.line}: input_id not run yet"


def test_stable_names_are_profile_ids_of_the_matched_device() -> None:
    known = profiles()
    for rule in load_rules():
        for link in rule.values("SYMLINK"):
            assert link.startswith("gatewayd/"), f"line {rule.line}: {link}"
            profile = known.get(link.removeprefix("gatewayd/"))
            assert profile is not None, f"line {rule.line}: {link} names no profile"
            listed = [u.lower() for u in profile.get("match", {}).get("usb", [])]
            assert rule.usb_id in listed, f"line {rule.line}: {link} does not list {rule.usb_id}"


def test_a_group_always_comes_with_mode_0660() -> None:
    for rule in load_rules():
        if rule.first("GROUP") is not None:
            assert rule.first("MODE") == "0660", f"line {rule.line}"
