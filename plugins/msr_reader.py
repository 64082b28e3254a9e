"""Magnetic-stripe readers on a serial port (RS-232, CDC-ACM, USB-serial).

The reader's firmware checks parity and LRC and sends text (``%…?;…?`` and a CR/LF, see
``gatewayd.protocols.msr``); this driver frames it as lines (reusing the serial scanner's
framing, so a reader configured without a suffix is flushed after ``flush_timeout_ms``),
decodes each swipe and picks the member's card number with the profile's ``card_number``
rules: which track and field hold it differs per chain, so it is data, not code.

The driver builds the token itself (kind ``card_number``): a bank card's PAN must not be
classified as a UnionPay payment code just because it starts with 62.

Card data is personal: a log line names tracks and reasons, never track contents. A track
read as ``E`` is logged; a swipe with no readable track, or none holding a card number, is
logged and produces no event. Keyboard-wedge readers use ``keyboard_wedge`` with
``decode = "msr"``, which calls ``swipe_to_input`` below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gatewayd.drivers import Driver, RawInput
from gatewayd.hookspecs import hookimpl
from gatewayd.plugins.serial_scanner import SerialLineDriver, SerialLineOptions
from gatewayd.protocols.checks import luhn_valid
from gatewayd.protocols.msr import CardNumberRule, MsrError, Swipe, SwipeDecoder, pick_card_number
from gatewayd.protocols.tokens import Method, Token, TokenKind


class CardNumberRuleOption(BaseModel):
    """One ``[[options.card_number]]`` rule; see ``CardNumberRule`` for the semantics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    track: Literal[1, 2, 3] = 2
    field: Literal["pan", "discretionary", "raw", "name"] = "pan"
    start: int | None = None
    stop: int | None = None
    pattern: str | None = None

    def rule(self) -> CardNumberRule:
        try:
            return CardNumberRule(**self.model_dump())
        except MsrError as exc:  # track 3 with a parsed field, a bad pattern…
            raise ValueError(str(exc)) from None

    def model_post_init(self, context: Any, /) -> None:
        self.rule()  # validate at config time, so the error names the key


DEFAULT_RULES = (CardNumberRuleOption(),)


class MsrOptions(SerialLineOptions):
    """The serial options of ``serial_scanner`` plus the card-number rules."""

    method: Method = Method.MAGSTRIPE
    card_number: tuple[CardNumberRuleOption, ...] = Field(default=DEFAULT_RULES, min_length=1)


def swipe_to_input(
    swipe: Swipe, rules: tuple[CardNumberRuleOption, ...], log: Any
) -> RawInput | None:
    """The card-number token of a swipe per the first rule that yields one, else None (logged).

    Track read errors are logged (track numbers only). The token carries the track the number
    came from and whether its Luhn check digit holds.
    """
    if swipe.errors:
        log.warning("msr_track_error", tracks=list(swipe.errors))
    for option in rules:
        number = pick_card_number(swipe, option.rule())
        if number:
            return RawInput(
                token=Token(
                    kind=TokenKind.CARD_NUMBER,
                    value=number,
                    extra={"track": option.track, "check_digit": luhn_valid(number)},
                )
            )
    present = [n for n, t in ((1, swipe.track1), (2, swipe.track2), (3, swipe.track3)) if t]
    log.warning("msr_no_card_number", tracks_read=present, rules=len(rules))
    return None


def decode_swipes(text: str, rules: tuple[CardNumberRuleOption, ...], log: Any) -> list[RawInput]:
    """Every card-number input in one line of reader output; bad swipes are logged, dropped."""
    decoder = SwipeDecoder(max_line=max(512, len(text) + 1))
    decoder.feed(text)
    decoder.end_swipe()
    out: list[RawInput] = []
    while True:
        try:
            swipe = decoder.next_item()
        except MsrError as exc:
            # Codec messages name a sentinel or one offending character, never track data.
            log.warning("msr_unreadable_swipe", reason=str(exc))
            continue
        if swipe is None:
            return out
        raw = swipe_to_input(swipe, rules, log)
        if raw is not None:
            out.append(raw)


class MsrReader(SerialLineDriver):
    """A serial magstripe reader: one ``card_number`` event per readable swipe."""

    name = "msr_reader"
    method = Method.MAGSTRIPE
    options = MsrOptions

    async def _read(self) -> AsyncIterator[RawInput]:
        assert isinstance(self.opts, MsrOptions)
        rules = self.opts.card_number
        async for line in super()._read():
            for raw in decode_swipes(line.text, rules, self.log):
                yield raw


@hookimpl
def gatewayd_driver_classes() -> list[type[Driver]]:
    return [MsrReader]
