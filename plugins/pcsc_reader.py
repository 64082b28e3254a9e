"""IC-card readers through PC/SC (pyscard): a card's UID, or a number stored on a MIFARE Classic.

Every PC/SC call blocks, so each driver session owns one worker thread (a single-thread
executor) that makes all of them in order; the event loop only awaits their results. The session
waits in ``SCardGetStatusChange`` for the reader's state to change (no polling): ``stop()``
wakes it with ``SCardCancel``, and the wait is bounded anyway so that a lost cancel costs at
most ``WAIT_MS``.

A card is read once per insertion: while it stays on the reader nothing more is reported. The
reader's event counter (the high 16 bits of its state) tells a card removed and put back
between two waits from one that stayed. A card already present when a session starts (after
the reader or pcscd came back) is read, and reported unless it is the card reported last whose
removal was never seen.

Card trouble (wrong key, card pulled away mid-read, unsupported card) is logged with a named
error and produces no event; the reader stays online. A missing reader or pcscd is
``DeviceUnavailable``: the base reports the device offline and reopens it, establishing a new
PC/SC context, so the driver recovers by itself when pcscd returns.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Literal, NoReturn, TypeVar, cast

from pydantic import Field, field_validator, model_validator
from smartcard import scard

from gatewayd.drivers import DeviceSpec, Driver, DriverOptions, RawInput
from gatewayd.errors import DeviceFailed, DeviceUnavailable, GatewayError
from gatewayd.hookspecs import hookimpl
from gatewayd.protocols.tokens import Method, Token, TokenKind

T = TypeVar("T")

PNP_NOTIFICATION = "\\\\?PnP?\\Notification"  # pcsc-lite's pseudo reader: reader list changes
WAIT_MS = 5000  # bound on one status wait; SCardCancel normally ends it at once
PNP_WAIT_MS = 5000  # while the reader is missing: wait this long for the reader list to change
REMOVAL_PROBE_MS = 1000  # after a failed exchange: time for pcscd (polls 400 ms) to see a removal
CANCEL_ROUNDS = 10
GET_UID = bytes.fromhex("FFCA000000")

_SERVICE_GONE = frozenset(
    {
        scard.SCARD_E_NO_SERVICE,
        scard.SCARD_E_SERVICE_STOPPED,
        scard.SCARD_F_COMM_ERROR,
        scard.SCARD_E_INVALID_HANDLE,  # a context from before a pcscd restart
    }
)
_READER_GONE = frozenset(
    {
        scard.SCARD_E_UNKNOWN_READER,
        scard.SCARD_E_READER_UNAVAILABLE,
        scard.SCARD_E_NO_READERS_AVAILABLE,
    }
)
_CARD_GONE = frozenset({scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD})
# Errors that a reopen will not cure (our bug, or the host): the base backs off. Any other
# error of a status wait is treated as pcscd or the reader going away (pcscd shutting down
# answers a pending wait with SCARD_W_SECURITY_VIOLATION, for one).
_DEVICE_FAILED = frozenset(
    {
        scard.SCARD_E_INVALID_PARAMETER,
        scard.SCARD_E_INVALID_VALUE,
        scard.SCARD_E_NO_MEMORY,
        scard.SCARD_F_INTERNAL_ERROR,
    }
)


# -- errors -----------------------------------------------------------------------------------


class CardError(GatewayError):
    """A card exchange failed but the reader is fine: logged, no event, device stays online."""

    code: ClassVar[str] = "card_error"

    def __init__(self, message: str, sw: bytes | None = None) -> None:
        super().__init__(message)
        self.sw = sw

    @property
    def sw_hex(self) -> str | None:
        return self.sw.hex(" ").upper() if self.sw is not None else None


class CardRemoved(CardError):
    code = "card_removed"


class CardOperationFailed(CardError):
    code = "operation_failed"


class CardUnsupported(CardError):
    code = "unsupported"


class CardAuthenticationFailed(CardError):
    code = "authentication_failed"


class CardWrongLength(CardError):
    code = "wrong_length"


class CardCommunicationError(CardError):
    code = "communication_error"


class CardInUse(CardError):
    code = "card_in_use"


class CardDataInvalid(CardError):
    code = "data_invalid"


StatusTable = dict[int, tuple[type[CardError], str]]
# Status words of the reader pseudo-APDUs (ACS ACR122/ACR1255 manuals, PC/SC part 3).
STATUS_WORDS: StatusTable = {
    0x6300: (CardOperationFailed, "the operation failed"),
    0x6281: (CardOperationFailed, "part of the returned data may be corrupted"),
    0x6282: (CardWrongLength, "end of data reached before Le bytes"),
    0x6700: (CardWrongLength, "wrong length"),
    0x6981: (CardUnsupported, "command incompatible with the card"),
    0x6982: (CardAuthenticationFailed, "security status not satisfied (not authenticated)"),
    0x6983: (CardAuthenticationFailed, "authentication method blocked"),
    0x6986: (CardOperationFailed, "command not allowed"),
    0x6A81: (CardUnsupported, "function not supported"),
    0x6A82: (CardOperationFailed, "block not found"),
    0x6B00: (CardOperationFailed, "wrong parameters P1-P2 (block out of range?)"),
    0x6D00: (CardUnsupported, "instruction not supported"),
    0x6E00: (CardUnsupported, "class not supported"),
}
# When authenticating, the generic "63 00 failed" means the key was refused.
AUTH_STATUS_WORDS: StatusTable = {**STATUS_WORDS, 0x6300: (CardAuthenticationFailed, "key refused")}


def check_status(response: bytes, step: str, table: StatusTable) -> bytes:
    """Split an R-APDU: return its data on ``90 00``, else raise the named ``CardError``."""
    if len(response) < 2:
        raise CardCommunicationError(f"{step}: no status word in the response")
    data, sw = response[:-2], response[-2:]
    word = int.from_bytes(sw, "big")
    if word == 0x9000:
        return data
    if sw[0] == 0x6C:
        raise CardWrongLength(f"{step}: wrong Le, card has {sw[1]} bytes", sw)
    kind, meaning = table.get(word, (CardOperationFailed, "unexpected status word"))
    raise kind(f"{step}: {meaning}", sw)


# -- options ----------------------------------------------------------------------------------


class PcscOptions(DriverOptions):
    """``reader``: exact PC/SC reader name, a glob (``ACS ACR122*``) or a substring; empty =
    the first reader. ``read = "uid"`` reports the UID (kind ``ic_uid``); ``"mifare"`` reads
    ``block`` of a MIFARE Classic with ``key`` as key ``key_type`` and reports the number
    stored there (kind ``card_number``) decoded per ``encoding``:

    * ``ascii``: printable characters, NUL/FF/space padding stripped;
    * ``bcd``: two digits per byte, F nibbles as padding;
    * ``hex``: the 16 bytes as upper-case hex.
    """

    reader: str = ""
    read: Literal["uid", "mifare"] = "uid"
    block: int = Field(default=4, ge=0, le=255)
    key: str = Field(default="FFFFFFFFFFFF", pattern=r"^[0-9A-Fa-f]{12}$")
    key_type: Literal["A", "B"] = "A"
    encoding: Literal["ascii", "bcd", "hex"] = "ascii"

    @field_validator("key")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _not_a_trailer(self) -> PcscOptions:
        if self.read == "mifare" and is_sector_trailer(self.block):
            raise ValueError(f"block {self.block} is a sector trailer (keys), not data")
        return self


def is_sector_trailer(block: int) -> bool:
    """MIFARE Classic: the last block of each sector (4 blocks, 16 from block 128 on 4K)."""
    return block % 4 == 3 if block < 128 else block % 16 == 15


def match_reader(readers: Sequence[str], pattern: str) -> str | None:
    """The first reader named exactly ``pattern``, else matching it as a glob or a substring."""
    if not pattern:
        return readers[0] if readers else None
    if pattern in readers:
        return pattern
    if any(ch in pattern for ch in "*?["):
        return next((r for r in readers if fnmatch.fnmatchcase(r, pattern)), None)
    return next((r for r in readers if pattern.lower() in r.lower()), None)


def decode_stored_number(block: bytes, encoding: str) -> str:
    """The number stored in a data block. Raises ``CardDataInvalid`` when it holds none."""
    if encoding == "hex":
        return block.hex().upper()
    if encoding == "bcd":
        digits = block.hex().upper().strip("F")
        if not digits or not digits.isdigit():
            raise CardDataInvalid(f"block is not BCD digits padded with F ({len(block)} bytes)")
        return digits
    text = block.strip(b"\x00\xff ")
    if not text or not all(0x21 <= b <= 0x7E for b in text):
        raise CardDataInvalid("block holds no printable ASCII number")
    return text.decode("ascii")


# -- the blocking side: runs on the session's worker thread only ------------------------------


def _unavailable(hresult: int, what: str) -> DeviceUnavailable | None:
    if hresult in _SERVICE_GONE:
        return DeviceUnavailable(f"pcscd not available ({what}: {_message(hresult)})")
    if hresult in _READER_GONE:
        return DeviceUnavailable(f"reader gone ({what}: {_message(hresult)})")
    return None


def _session_error(hresult: int, what: str) -> GatewayError:
    """A failed context-level call: unavailable (reopen soon) unless reopening cannot help."""
    if hresult in _DEVICE_FAILED:
        return DeviceFailed(f"{what}: {_message(hresult)}")
    return _unavailable(hresult, what) or DeviceUnavailable(
        f"pcscd or reader lost ({what}: {_message(hresult)})"
    )


def _message(hresult: int) -> str:
    return f"{scard.SCardGetErrorMessage(hresult).rstrip('.')} (0x{hresult & 0xFFFFFFFF:08X})"


def _establish() -> Any:
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise _session_error(hresult, "establish")
    return context


def _list_readers(context: Any) -> list[str]:
    hresult, readers = scard.SCardListReaders(context, [])
    if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
        return []
    if hresult != scard.SCARD_S_SUCCESS:
        raise _session_error(hresult, "list readers")
    return list(readers)


def _wait_change(
    context: Any, states: list[tuple[str, int]], timeout_ms: int
) -> list[tuple[str, int]] | None:
    """New states once one differs from ``states``; None on timeout or cancel."""
    hresult, new = scard.SCardGetStatusChange(context, timeout_ms, states)
    if hresult in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED):
        return None
    if hresult != scard.SCARD_S_SUCCESS:
        raise _session_error(hresult, "status")
    return [(name, state & ~scard.SCARD_STATE_CHANGED) for name, state, _atr in new]


def _removed_within(context: Any, reader: str, state: int, timeout_ms: int) -> bool:
    """Whether the reader reports the card gone within ``timeout_ms``."""
    deadline = time.monotonic() + timeout_ms / 1000
    while (left := int((deadline - time.monotonic()) * 1000)) > 0:
        hresult, new = scard.SCardGetStatusChange(context, left, [(reader, state)])
        if hresult != scard.SCARD_S_SUCCESS:
            return False
        state = new[0][1] & ~scard.SCARD_STATE_CHANGED
        if not state & scard.SCARD_STATE_PRESENT:
            return True
    return False


def _transmit(card: Any, protocol: int, apdu: bytes, step: str, table: StatusTable) -> bytes:
    hresult, response = scard.SCardTransmit(card, protocol, list(apdu))
    if hresult != scard.SCARD_S_SUCCESS:
        _raise_for(hresult, step)
    return check_status(bytes(response), step, table)


def _raise_for(hresult: int, step: str) -> NoReturn:
    unavailable = _unavailable(hresult, step)
    if unavailable is not None:
        raise unavailable
    if hresult in _CARD_GONE:
        raise CardRemoved(f"{step}: {_message(hresult)}")
    if hresult == scard.SCARD_E_SHARING_VIOLATION:
        raise CardInUse(f"{step}: another application holds the card")
    raise CardCommunicationError(f"{step}: {_message(hresult)}")


def _read_card(context: Any, reader: str, options: PcscOptions) -> Token:
    """Connect, read the UID or the stored number, disconnect."""
    hresult, card, protocol = scard.SCardConnect(
        context, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
    )
    if hresult != scard.SCARD_S_SUCCESS:
        _raise_for(hresult, "connect")
    try:
        if options.read == "uid":
            uid = _transmit(card, protocol, GET_UID, "get UID", STATUS_WORDS)
            if not uid:
                raise CardOperationFailed("get UID: empty UID")
            return Token(kind=TokenKind.IC_UID, value=uid.hex().upper())
        load_key = bytes.fromhex("FF82000006" + options.key)
        key_type = 0x60 if options.key_type == "A" else 0x61
        authenticate = bytes([0xFF, 0x86, 0, 0, 5, 1, 0, options.block, key_type, 0])
        read = bytes([0xFF, 0xB0, 0, options.block, 16])
        _transmit(card, protocol, load_key, "load key", STATUS_WORDS)
        _transmit(card, protocol, authenticate, "authenticate", AUTH_STATUS_WORDS)
        data = _transmit(card, protocol, read, "read block", STATUS_WORDS)
        return Token(kind=TokenKind.CARD_NUMBER, value=decode_stored_number(data, options.encoding))
    finally:
        scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)


# -- the driver -------------------------------------------------------------------------------


class PcscReader(Driver):
    """A contactless (or contact) reader under pcscd, one reader per device entry."""

    name = "pcsc"
    method = Method.IC_CARD
    options = PcscOptions

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec)
        self.opts = cast(PcscOptions, spec.options)
        self.reader: str | None = None
        self._context: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._reader_missing = False
        self._unremoved: str | None = None  # value last reported whose removal was not seen

    async def _call(self, func: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise DeviceUnavailable("session closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    async def _open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"pcsc:{self.spec.id}")
        try:
            self._context = await self._call(_establish)
            readers = await self._call(_list_readers, self._context)
            reader = match_reader(readers, self.opts.reader)
            if reader is None and self._reader_missing:
                # Missing again: wait (bounded, cancellable) for the reader list to change
                # rather than asking pcscd four times a second.
                pnp: list[tuple[str, int]] = [(PNP_NOTIFICATION, scard.SCARD_STATE_UNAWARE)]
                current = await self._call(_wait_change, self._context, pnp, 0)
                pnp = current or pnp
                await self._call(_wait_change, self._context, pnp, PNP_WAIT_MS)
                readers = await self._call(_list_readers, self._context)
                reader = match_reader(readers, self.opts.reader)
            if reader is None:
                self._reader_missing = True
                wanted = repr(self.opts.reader) if self.opts.reader else "any reader"
                raise DeviceUnavailable(f"no PC/SC reader matches {wanted} (readers: {readers})")
        except BaseException:
            await self._close()
            raise
        self._reader_missing = False
        if reader != self.reader:
            self.log.info("pcsc_reader_selected", reader=reader)
        self.reader = reader

    async def _read(self) -> AsyncIterator[RawInput]:
        context, reader = self._context, self.reader
        assert reader is not None
        states = [
            (reader, scard.SCARD_STATE_UNAWARE),
            (PNP_NOTIFICATION, scard.SCARD_STATE_UNAWARE),
        ]
        handled: int | None = None  # event counter of the insertion already handled
        first = True
        while not self._closed:
            new = await self._call(_wait_change, context, states, 0 if first else WAIT_MS)
            if new is None or self._closed:
                continue
            states = new
            state = states[0][1]
            if state & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                raise DeviceUnavailable(f"reader {reader!r} removed")
            at_open, first = first, False
            counter = state >> 16
            if not state & scard.SCARD_STATE_PRESENT:
                if handled is not None:
                    self.log.debug("card_removed")
                handled, self._unremoved = None, None
                continue
            if handled == counter:
                continue  # the same insertion (e.g. only INUSE changed)
            handled = counter
            if state & scard.SCARD_STATE_MUTE:
                self.log.warning("card_read_failed", error="card_mute", detail="card gives no ATR")
                continue
            raw = await self._read_one(context, reader, state, at_open)
            if raw is not None:
                yield raw

    async def _read_one(
        self, context: Any, reader: str, state: int, at_open: bool
    ) -> RawInput | None:
        try:
            token = await self._call(_read_card, context, reader, self.opts)
        except CardError as exc:
            error = exc
            # vpcd and some readers answer a vanished card with an empty response: ask the
            # reader whether the card is still there.
            if (
                isinstance(exc, CardCommunicationError)
                and not self._closed
                and await self._call(_removed_within, context, reader, state, REMOVAL_PROBE_MS)
            ):
                error = CardRemoved(str(exc))
            if isinstance(error, CardRemoved):
                self.log.info("card_removed_during_read", detail=str(error))
            else:
                self.log.warning(
                    "card_read_failed", error=error.code, sw=error.sw_hex, detail=str(error)
                )
            return None
        if at_open and token.value == self._unremoved:
            self.log.info("card_still_present")
            return None
        self._unremoved = token.value
        self.log.debug("card_read", kind=token.kind.value)
        return RawInput(token=token)

    async def _close(self) -> None:
        context, self._context = self._context, None
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if context is not None:
            loop = asyncio.get_running_loop()
            # Queued behind any status wait in flight; SCardCancel ends that wait. A cancel
            # that lands before the wait begins is lost, hence the rounds.
            release = loop.run_in_executor(executor, scard.SCardReleaseContext, context)
            for _ in range(CANCEL_ROUNDS):
                await asyncio.to_thread(scard.SCardCancel, context)
                done, _pending = await asyncio.wait({release}, timeout=0.2)
                if done:
                    break
            else:
                self.log.warning("pcsc_close_slow")
        executor.shutdown(wait=False)


@hookimpl
def gatewayd_driver_classes() -> list[type[Driver]]:
    return [PcscReader]
