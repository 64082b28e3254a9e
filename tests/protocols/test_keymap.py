"""Key events → text: layouts, modifiers, dead keys, terminators, timing, round trips, fuzzing."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.protocols.errors import ProtocolError
from gatewayd.protocols.keymap import (
    KEY_A,
    KEY_CAPSLOCK,
    KEY_ENTER,
    KEY_KPENTER,
    KEY_LEFTCTRL,
    KEY_LEFTSHIFT,
    KEY_RIGHTALT,
    KEY_RIGHTSHIFT,
    KEY_TAB,
    LAYOUTS,
    KeyDecoder,
    KeyEvent,
    KeymapError,
    Scan,
    is_machine_typed,
    text_to_events,
)

KEY_1, KEY_2, KEY_0, KEY_6, KEY_Q, KEY_Y, KEY_Z, KEY_E = 2, 3, 11, 7, 16, 21, 44, 18
KEY_LEFTBRACE, KEY_GRAVE, KEY_SPACE, KEY_BACKSPACE, KEY_NUMLOCK, KEY_KP1 = 26, 41, 57, 14, 69, 79


class Typist:
    """Presses keys on a decoder with a running clock."""

    def __init__(self, decoder: KeyDecoder, step: float = 0.01) -> None:
        self.decoder = decoder
        self.now = 100.0
        self.step = step
        self.scans: list[Scan] = []

    def send(self, code: int, value: int) -> None:
        scan = self.decoder.feed(code, value, self.now)
        if scan is not None:
            self.scans.append(scan)

    def tap(self, code: int, *held: int) -> None:
        for key in held:
            self.send(key, 1)
        self.send(code, 1)
        self.send(code, 0)
        for key in held:
            self.send(key, 0)
        self.now += self.step


def run(events: list[KeyEvent], decoder: KeyDecoder) -> list[Scan]:
    scans = []
    for event in events:
        scan = decoder.feed(event.code, event.value, event.timestamp)
        if scan is not None:
            scans.append(scan)
    return scans


def test_us_letters_shift_and_digits() -> None:
    typist = Typist(KeyDecoder("us"))
    typist.tap(KEY_A, KEY_LEFTSHIFT)
    typist.tap(KEY_A)
    typist.tap(KEY_1, KEY_RIGHTSHIFT)
    typist.tap(KEY_1)
    typist.tap(KEY_ENTER)
    assert [s.text for s in typist.scans] == ["Aa!1"]


def test_azerty_digits_need_shift() -> None:
    typist = Typist(KeyDecoder("fr"))
    typist.tap(KEY_1)
    typist.tap(KEY_1, KEY_LEFTSHIFT)
    typist.tap(KEY_2)
    typist.tap(KEY_2, KEY_LEFTSHIFT)
    typist.tap(KEY_Q)
    typist.tap(KEY_0, KEY_RIGHTALT)
    typist.tap(KEY_ENTER)
    assert typist.scans[0].text == "&1é2a@"


def test_qwertz_swaps_y_and_z_and_has_altgr() -> None:
    typist = Typist(KeyDecoder("de"))
    typist.tap(KEY_Y)
    typist.tap(KEY_Z)
    typist.tap(KEY_Q, KEY_RIGHTALT)
    typist.tap(KEY_E, KEY_RIGHTALT)
    typist.tap(KEY_ENTER)
    assert typist.scans[0].text == "zy@€"


def test_capslock_changes_letters_only_and_inverts_shift() -> None:
    typist = Typist(KeyDecoder("us"))
    typist.tap(KEY_CAPSLOCK)
    typist.tap(KEY_A)
    typist.tap(KEY_A, KEY_LEFTSHIFT)
    typist.tap(KEY_1)
    typist.tap(KEY_CAPSLOCK)
    typist.tap(KEY_A)
    typist.tap(KEY_ENTER)
    assert typist.scans[0].text == "Aa1a"
    fr = Typist(KeyDecoder("fr"))
    fr.tap(KEY_CAPSLOCK)
    fr.tap(KEY_2)  # AZERTY caps does not give digits (xkb); é is not a letter pair with 2
    fr.tap(KEY_Q)
    fr.tap(KEY_ENTER)
    assert fr.scans[0].text == "éA"


def test_dead_keys_compose() -> None:
    fr = Typist(KeyDecoder("fr"))
    fr.tap(KEY_LEFTBRACE)  # dead circumflex
    fr.tap(KEY_E)
    fr.tap(KEY_LEFTBRACE)
    fr.tap(KEY_SPACE)
    fr.tap(KEY_LEFTBRACE, KEY_LEFTSHIFT)  # dead diaeresis
    fr.tap(KEY_1, KEY_LEFTSHIFT)  # '1' does not compose
    fr.tap(KEY_LEFTBRACE)
    fr.tap(KEY_ENTER)  # a dead key pending at the terminator types itself
    assert fr.scans[0].text == "ê^¨1^"
    de = Typist(KeyDecoder("de"))
    de.tap(KEY_GRAVE)  # dead circumflex on QWERTZ
    de.tap(KEY_GRAVE)
    de.tap(KEY_ENTER)
    assert de.scans[0].text == "^"


@pytest.mark.parametrize(
    ("terminator", "code"), [("enter", KEY_ENTER), ("kp_enter", KEY_KPENTER), ("tab", KEY_TAB)]
)
def test_terminators_complete_on_press(terminator: str, code: int) -> None:
    decoder = KeyDecoder("us", terminator)
    decoder.feed(KEY_A, 1, 0.0)
    decoder.feed(KEY_A, 0, 0.001)
    scan = decoder.feed(code, 1, 0.010)
    assert scan == Scan(text="a", chars=1, duration=0.010, mean_interval=0.010)
    assert decoder.feed(code, 0, 0.011) is None
    assert decoder.feed(code, 2, 0.012) is None


def test_other_terminator_keys_are_ignored() -> None:
    decoder = KeyDecoder("us", "tab")
    for code in (KEY_A, KEY_ENTER, KEY_KPENTER):
        decoder.feed(code, 1, 0.0)
        decoder.feed(code, 0, 0.0)
    assert decoder.pending == "a"


def test_lone_terminator_is_not_a_scan() -> None:
    decoder = KeyDecoder()
    assert decoder.feed(KEY_ENTER, 1, 0.0) is None


def test_backspace_ctrl_repeat_and_unmapped_keys() -> None:
    typist = Typist(KeyDecoder("us"))
    typist.tap(KEY_A)
    typist.tap(KEY_Q)
    typist.tap(KEY_BACKSPACE)
    typist.tap(KEY_A, KEY_LEFTCTRL)  # Ctrl+A types nothing
    typist.send(KEY_Q, 1)
    typist.send(KEY_Q, 2)  # auto-repeat types again
    typist.send(KEY_Q, 0)
    typist.tap(103)  # KEY_UP
    typist.tap(KEY_ENTER)
    assert typist.scans[0].text == "aqq"


def test_keypad_follows_numlock() -> None:
    typist = Typist(KeyDecoder("de"))
    typist.tap(KEY_KP1)
    typist.tap(83)  # KP dot: ',' on German keypads
    typist.tap(KEY_NUMLOCK)
    typist.tap(KEY_KP1)
    typist.tap(KEY_KPENTER)
    typist.tap(KEY_ENTER)
    assert typist.scans[0].text == "1,"


def test_modifier_state_is_per_device() -> None:
    first, second = KeyDecoder("us"), KeyDecoder("us")
    first.feed(KEY_LEFTSHIFT, 1, 0.0)
    first.feed(KEY_CAPSLOCK, 1, 0.0)
    second.feed(KEY_A, 1, 0.0)
    assert second.pending == "a"
    first.feed(KEY_A, 1, 0.0)
    assert first.pending == "a"  # Shift + CapsLock cancel out
    first.reset()
    first.feed(KEY_A, 1, 0.0)
    assert first.pending == "a"


def test_scan_timing_and_machine_detection() -> None:
    fast = run(text_to_events("6901234567892", interval=0.004), KeyDecoder())[0]
    assert fast.text == "6901234567892" and fast.chars == 13
    assert fast.duration == pytest.approx(0.052)
    assert fast.mean_interval == pytest.approx(0.004)
    assert is_machine_typed(fast)
    slow = run(text_to_events("123456", interval=0.150), KeyDecoder())[0]
    assert not is_machine_typed(slow)
    assert is_machine_typed(slow, max_interval=0.2)
    borderline = Scan(text="abc", chars=3, duration=0.090, mean_interval=0.030)
    assert is_machine_typed(borderline)
    assert not is_machine_typed(borderline, min_chars=6)


def test_magstripe_typed_through_an_azerty_wedge() -> None:
    track = "%B5350290149345177^FATEHI/SUALEH^1604201?;5350290149345177=1604201?"
    for layout in ("us", "fr", "de"):
        (scan,) = run(text_to_events(track, layout), KeyDecoder(layout))
        assert scan.text == track


def test_reverse_uses_shift_for_azerty_digits() -> None:
    events = text_to_events("1", "fr")
    assert [(e.code, e.value) for e in events] == [
        (KEY_LEFTSHIFT, 1),
        (KEY_1, 1),
        (KEY_1, 0),
        (KEY_LEFTSHIFT, 0),
        (KEY_ENTER, 1),
        (KEY_ENTER, 0),
    ]
    assert text_to_events("@", "fr")[0] == KeyEvent(code=KEY_RIGHTALT, value=1, timestamp=0.0)


def test_reverse_rejects_untypeable_text_and_bad_settings() -> None:
    with pytest.raises(KeymapError):
        text_to_events("中", "us")
    with pytest.raises(KeymapError):
        text_to_events("a", "dvorak")
    with pytest.raises(KeymapError):
        KeyDecoder("dvorak")
    with pytest.raises(KeymapError):
        KeyDecoder("us", "space")


def test_bad_events_and_overlong_input() -> None:
    decoder = KeyDecoder(max_chars=4)
    with pytest.raises(KeymapError):
        decoder.feed(KEY_A, 3, 0.0)
    with pytest.raises(KeymapError):
        decoder.feed(-1, 1, 0.0)
    for _ in range(4):
        decoder.feed(KEY_A, 1, 0.0)
    with pytest.raises(KeymapError, match="more than 4"):
        decoder.feed(KEY_A, 1, 0.0)
    assert decoder.pending == ""
    decoder.feed(KEY_A, 1, 1.0)
    assert decoder.feed(KEY_ENTER, 1, 1.0) == Scan(
        text="a", chars=1, duration=0.0, mean_interval=0.0
    )


def typeable(layout: str) -> st.SearchStrategy[str]:
    chars = sorted(
        {
            c
            for entry in LAYOUTS[layout].values()
            for c in entry
            if len(c) == 1 and unicodedata.category(c) != "Mn"
        }
        | set("âêîôûÂÊëïüÿ" if layout == "fr" else "")
    )
    return st.text(alphabet=st.sampled_from(chars), min_size=1, max_size=40)


@pytest.mark.parametrize("layout", ["us", "fr", "de"])
def test_round_trip_every_typeable_character(layout: str) -> None:
    @settings(max_examples=300, deadline=None)
    @given(text=typeable(layout))
    def check(text: str) -> None:
        (scan,) = run(
            text_to_events(text, layout, "tab", interval=0.002), KeyDecoder(layout, "tab")
        )
        assert scan.text == text
        assert scan.mean_interval == pytest.approx(0.002)

    check()


@settings(max_examples=5000, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from(
                    [KEY_A, KEY_ENTER, KEY_LEFTSHIFT, KEY_RIGHTALT, KEY_CAPSLOCK, KEY_LEFTBRACE]
                ),
                st.integers(-5, 0x320),
            ),
            st.integers(-1, 3),
            st.floats(allow_nan=True, allow_infinity=True),
        ),
        max_size=60,
    ),
    layout=st.sampled_from(["us", "fr", "de"]),
)
def test_fuzz_only_keymap_error_escapes(events: list[tuple[int, int, float]], layout: str) -> None:
    decoder = KeyDecoder(layout, max_chars=16)
    for code, value, timestamp in events:
        try:
            scan = decoder.feed(code, value, timestamp)
        except KeymapError:
            continue
        except ProtocolError as exc:  # pragma: no cover - the assertion
            pytest.fail(f"foreign ProtocolError {exc!r}")
        if scan is not None:
            assert scan.chars == len(scan.text) > 0
