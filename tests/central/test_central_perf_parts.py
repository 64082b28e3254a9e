"""The identify hot path's parts: prepared statements, SQLite group commit, fast answers.

Identify skips SQLAlchemy's per-statement machinery and, on SQLite, commits the records of
concurrent requests together. These tests pin down what that must not change: an answer
leaves only once its record is committed (also across a SIGKILL), a replay during a pending
batch gets the first answer and is recorded once, one bad row does not fail its batch, a
busy write lock never blocks the event loop, and the shortcuts answer exactly what the
general code answers.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from gatewayd.central.api import respond
from gatewayd.central.db import Database
from gatewayd.central.identify import GC_YOUNG_THRESHOLD, own_code, token_from_request
from gatewayd.central.jsonwire import dumps, dumps_bytes
from gatewayd.central.migrate import upgrade
from gatewayd.central.models import cards, identifications, members
from gatewayd.central.schemas import IdentifyRequest, IdentifyResponse
from gatewayd.central.seed import demo_id_number
from gatewayd.central.testing import free_port, wait_for_port
from gatewayd.protocols.checks import luhn_check_digit
from gatewayd.protocols.tokens import Method, TokenError, TokenKind, classify

SECRET = "test-secret-not-for-production"


async def recorded(central: Any) -> list[Any]:
    async with central.services.db.read() as conn:
        return list(
            (await conn.execute(sa.select(identifications).order_by(identifications.c.id))).all()
        )


def with_luhn(payload: str) -> str:
    return payload + luhn_check_digit(payload)


# --- answers and records ---------------------------------------------------------------------


async def test_concurrent_identifies_share_commits(central: Any) -> None:
    member = await central.member()
    code = member["cards"][0]["member_code"]
    answers = await asyncio.gather(
        *(central.identify(code, event_id=f"evt-{n}") for n in range(40))
    )
    assert all(status == 200 for status, _ in answers)
    ids = sorted(body["identification_id"] for _, body in answers)
    rows = await recorded(central)
    assert sorted(r.id for r in rows) == ids and len(set(ids)) == 40
    hot = central.services.db.sqlite_hot_path
    if hot is not None:  # SQLite: fewer transactions than records
        assert hot.rows >= 40 and hot.batches < hot.rows


async def test_a_replay_while_the_first_answer_is_pending_gets_that_answer(
    central: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gatewayd.central import identify

    waited = []
    first_answer = identify._first_answer

    async def counting(pending: Any) -> Any:
        waited.append(pending)
        return await first_answer(pending)

    monkeypatch.setattr(identify, "_first_answer", counting)
    member = await central.member(name="Pending")
    code = member["cards"][0]["member_code"]
    # The first record is held back until the seven replays arrived and wait for it.
    db = central.services.db
    recording = db.record
    gate = asyncio.Event()

    async def held(*args: Any) -> Any:
        await gate.wait()
        return await recording(*args)

    monkeypatch.setattr(db, "record", held)
    sent = asyncio.gather(*(central.identify(code, event_id="evt-same") for _ in range(8)))
    for _ in range(500):
        if len(waited) == 7:
            break
        await asyncio.sleep(0.01)
    assert len(waited) == 7  # every replay waits for the first answer, none for the table
    gate.set()
    answers = await sent
    assert len({json.dumps(body, sort_keys=True) for _, body in answers}) == 1
    assert answers[0][0] == 200
    rows = await recorded(central)
    assert len(rows) == 1 and rows[0].id == answers[0][1]["identification_id"]
    # Later replays find the stored answer, in the same shape.
    assert await central.identify(code, event_id="evt-same") == answers[0]


async def test_replay_with_the_in_flight_map_directly(central: Any) -> None:
    """The in-flight answer is shared; another store's same event id is its own event."""
    member = await central.member()
    code = member["cards"][0]["member_code"]
    first, replay, other_store = await asyncio.gather(
        central.identify(code, event_id="evt-x"),
        central.identify(code, event_id="evt-x"),
        central.identify(code, key="gw-2", store="store-2", event_id="evt-x"),
    )
    assert first == replay and first[0] == 200 and other_store[0] == 200
    assert other_store[1]["identification_id"] != first[1]["identification_id"]
    assert not central.services.identifier._in_flight
    assert len(await recorded(central)) == 2


async def test_fresh_answers_are_the_bytes_the_schema_path_produces(central: Any) -> None:
    member = await central.member(name='Zhāng "Wěi" ☃', phone="13812345678")
    card = member["cards"][0]
    await central.ok(
        "POST", f"/v1/members/{member['id']}/cards", json={"kind": "ic", "ic_uid": "04A1B2C3"}
    )
    bodies = []
    for token, fields in (
        (card["member_code"], {}),
        (card["number"], {}),
        ("04a1b2c3", {"method": "ic_card"}),
        ("13812345678", {"method": "manual"}),
        (card["member_code"], {"id_number": demo_id_number(3)}),
        ("96" + "0" * 17 + luhn_check_digit("96" + "0" * 17), {}),  # 404
        ("!!!", {}),  # 422
    ):
        payload = {"token": token, "store": "store-1", "terminal": "pos-1", **fields}
        async with central.http.post(
            central.url + "/v1/identify",
            json=payload,
            headers={"Authorization": f"Bearer {central.gateway_keys['gw-1']}"},
        ) as resp:
            raw = await resp.read()
            content_type = resp.headers["Content-Type"]
        assert content_type == "application/json; charset=utf-8"
        body = json.loads(raw)
        schema_path = respond(IdentifyResponse, body) if resp.status == 200 else None
        expected = schema_path.body if schema_path is not None else dumps_bytes(body)
        assert raw == expected, (token, raw)
        bodies.append(body)
    assert bodies[0]["member"]["name"] == 'Zhāng "Wěi" ☃'
    assert bodies[4]["id_match"] is False


def test_wire_json_reads_back_as_the_value_it_wrote() -> None:
    rng = random.Random(7)
    alphabet = 'aZ09 "\\/\n\t\x00\x1fé☃\U0001f600'
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        value = {
            "member": {"id": rng.randrange(10**12), "name": text, "phone_masked": None},
            "card": None if rng.random() < 0.3 else {"main": rng.random() < 0.5, "n": [1, "x"]},
            "id_match": rng.choice([None, True, False]),
            "x": -rng.randrange(10**6),
        }
        assert json.loads(dumps_bytes(value)) == value
        assert dumps(value) == dumps_bytes(value).decode()
    # Compact, UTF-8 as is; int keys as strings; a lone surrogate escaped, not an error.
    assert dumps_bytes({"a": [1, None], "n": "☃"}) == '{"a":[1,null],"n":"☃"}'.encode()
    assert json.loads(dumps_bytes({1: "x"})) == {"1": "x"}
    assert json.loads(dumps_bytes({"s": "x\ud800"})) == {"s": "x\ud800"}
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_own_code_shortcut_agrees_with_the_classifier() -> None:
    rng = random.Random(11)

    def general(req: IdentifyRequest) -> Any:
        try:
            return classify(req.token, req.method)
        except TokenError as exc:
            return f"error: {exc}"

    samples: list[str] = []
    for _ in range(400):
        member = with_luhn("96" + "".join(rng.choice("0123456789") for _ in range(17)))
        consumption = with_luhn("97" + "".join(rng.choice("0123456789") for _ in range(19)))
        samples += [member, consumption, member[:-1] + str((int(member[-1]) + 1) % 10)]
    half = with_luhn("96" + "1234567")  # 10 digits, doubled into 20
    samples += [half * 2, "96" + "0" * 18, "97" * 11, "９６" + "1" * 18, "96" * 10]
    for text in samples:
        for method in Method:
            req = IdentifyRequest(token=text, store="s", terminal="t", method=method)
            fast = own_code(req)
            if fast is None:
                continue
            assert method in (Method.BARCODE, Method.FACE, Method.PALM, Method.MANUAL)
            assert fast == general(req), (text, method)  # kind, value and no extra fields
            assert token_from_request(req) == fast
    # Not taken for a given kind or for inputs the classifier must look at.
    kinded = IdentifyRequest(token=samples[0], store="s", terminal="t", kind=TokenKind.CARD_NUMBER)
    assert own_code(kinded) is None
    assert own_code(IdentifyRequest(token=half * 2, store="s", terminal="t")) is None
    assert own_code(IdentifyRequest(token=" " + samples[0], store="s", terminal="t")) is None


# --- the database layer -----------------------------------------------------------------------


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> Any:
    db = Database.from_url(f"sqlite:///{tmp_path / 'hot.db'}")
    await upgrade(db)
    yield db
    await db.close()


def _record_values(n: int, **changes: Any) -> dict[str, Any]:
    values = {
        "store_id": "store-1",
        "terminal_id": "pos-1",
        "gateway_id": "gw-1",
        "event_id": f"evt-{n}",
        "token_kind": "member_code",
        "token_last4": "1234",
        "method": "barcode",
        "member_id": n,
        "card_id": n,
        "secondary_card": False,
        "status": 200,
        "response": "{}",
        "created_at": 1_700_000_000_000 + n,
    }
    values.update(changes)
    return values


def _recorder(db: Database) -> Any:
    from gatewayd.central.identify import _RECORD_COLUMNS, _STORED

    return db.recorder(identifications, _RECORD_COLUMNS, db.prepare(_STORED))


@pytest.fixture
async def any_db(db_url: str) -> Any:
    db = Database.from_url(db_url)
    yield db
    await db.close()


async def test_one_bad_row_does_not_fail_its_batch(any_db: Database) -> None:
    recorder = _recorder(any_db)

    async def record(n: int, **changes: Any) -> tuple[bool, Any]:
        values = _record_values(n, **changes)
        key = {"store": values["store_id"], "event_id": values["event_id"]}
        return await any_db.record(recorder, values, key)

    results = await asyncio.gather(
        record(1),
        record(2, token_kind=None),  # NOT NULL: this one fails
        record(3),
        record(1, status=404),  # the same event as the first: not inserted, the first found
        return_exceptions=True,
    )
    assert results[0][0] is True
    assert isinstance(results[1], sa.exc.IntegrityError)
    assert results[2][0] is True
    inserted, stored = results[3]
    assert inserted is False and stored.id == results[0][1] and stored.status == 200
    hot = any_db.sqlite_hot_path
    assert hot is None or hot.handed_off == 0
    async with any_db.read() as conn:
        rows = (await conn.execute(sa.select(identifications.c.event_id))).scalars().all()
    assert sorted(rows) == ["evt-1", "evt-3"]
    if any_db.dialect == "postgresql":  # SQLite has no column lengths
        # Too long for its column: refused as a single insert would be, never cut short.
        with pytest.raises(sa.exc.DBAPIError):
            await record(4, token_last4="12345")


async def test_batches_answer_each_row_with_its_own_id(any_db: Database) -> None:
    recorder = _recorder(any_db)
    values = [_record_values(n, event_id=None if n % 3 else f"evt-{n}") for n in range(60)]
    results = await asyncio.gather(
        *(
            any_db.record(recorder, v, {"store": "store-1", "event_id": v["event_id"]})
            for v in values
        )
    )
    assert all(inserted for inserted, _ in results)
    async with any_db.read() as conn:
        rows = (
            await conn.execute(sa.select(identifications.c.id, identifications.c.created_at))
        ).all()
    created = {row.id: row.created_at for row in rows}
    assert [created[new_id] for _, new_id in results] == [v["created_at"] for v in values]


async def test_a_taken_write_lock_is_waited_for_off_the_loop(
    sqlite_db: Database, tmp_path: Path
) -> None:
    recorder = _recorder(sqlite_db)
    other = sqlite3.connect(tmp_path / "hot.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    values = _record_values(7)
    pending = asyncio.ensure_future(
        sqlite_db.record(recorder, values, {"store": "store-1", "event_id": "evt-7"})
    )
    ticks = 0
    for _ in range(20):  # the loop keeps running while the batch waits in the thread
        await asyncio.sleep(0.01)
        ticks += 1
    assert not pending.done() and ticks == 20
    other.execute("COMMIT")
    other.close()
    inserted, new_id = await asyncio.wait_for(pending, 10)
    assert inserted is True and isinstance(new_id, int)
    hot = sqlite_db.sqlite_hot_path
    assert hot is not None and hot.handed_off == 1


async def test_prepared_rows_convert_like_the_engine(sqlite_db: Database) -> None:
    async with sqlite_db.write() as conn:
        await conn.execute(
            members.insert().values(
                id=1,
                name="A",
                level="default",
                points=1,
                balance_fen=2,
                active=True,
                created_at=0,
                updated_at=0,
            )
        )
        await conn.execute(
            cards.insert().values(
                id=1,
                member_id=1,
                number="8000000000000001",
                kind="barcode",
                is_main=False,
                checked=True,
                member_code="96000",
                active=True,
                created_at=0,
            )
        )
    query = sqlite_db.prepare(
        sa.select(members.c.active, cards.c.is_main.label("main"), cards.c.number)
        .select_from(cards.join(members, members.c.id == cards.c.member_id))
        .where(cards.c.member_code == sa.bindparam("code"))
        .limit(1)
    )
    row = await sqlite_db.fetch_row(query, {"code": "96000"})
    assert row.active is True and row.main is False and row.number == "8000000000000001"
    assert await sqlite_db.fetch_row(query, {"code": "nope"}) is None
    with pytest.raises(KeyError, match="code"):
        await sqlite_db.fetch_row(query, {})


async def test_a_busy_lookup_falls_back_to_the_engine(sqlite_db: Database) -> None:
    hot = sqlite_db.sqlite_hot_path
    assert hot is not None

    def busy(*_args: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")

    query = sqlite_db.prepare(sa.select(sa.literal(1).label("one")))
    hot.fetch = busy  # type: ignore[method-assign]
    row = await sqlite_db.fetch_row(query, {})
    assert row.one == 1


async def test_close_commits_what_is_queued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'close.db'}"
    db = Database.from_url(url)
    await upgrade(db)
    recorder = _recorder(db)
    futures = [
        asyncio.ensure_future(
            db.record(recorder, _record_values(n), {"store": "store-1", "event_id": f"evt-{n}"})
        )
        for n in range(5)
    ]
    await asyncio.sleep(0)  # queued, not yet flushed
    await db.close()
    assert [(await f)[0] for f in futures] == [True] * 5
    check = sqlite3.connect(tmp_path / "close.db")
    assert check.execute("SELECT count(*) FROM identifications").fetchone() == (5,)
    check.close()


async def test_the_wal_starts_over_under_sustained_writes(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """Commits back to back never leave a PASSIVE checkpoint a moment to catch up; without
    the RESTART the WAL grows with every commit (and look-ups slow down as it grows)."""
    hot = sqlite_db.sqlite_hot_path
    assert hot is not None
    hot.checkpoint_interval = 0.01
    hot.wal_restart_frames = 64
    recorder = _recorder(sqlite_db)
    wal = tmp_path / "hot.db-wal"
    page = 4096 + 24  # a frame: a page and its header
    largest = written = n = 0
    deadline = asyncio.get_running_loop().time() + 3
    while asyncio.get_running_loop().time() < deadline or hot.wal_restarts < 2:
        batch = [
            _record_values(n + k, response="x" * 3000, member_id=random.randrange(10**6))
            for k in range(20)
        ]
        n += len(batch)
        await asyncio.gather(
            *(
                sqlite_db.record(recorder, v, {"store": "store-1", "event_id": v["event_id"]})
                for v in batch
            )
        )
        written += len(batch)  # at least one page (a 3 kB answer) per row
        largest = max(largest, wal.stat().st_size if wal.exists() else 0)
        assert asyncio.get_running_loop().time() < deadline + 10, "no RESTART checkpoint"
    # Far more went through the WAL than it ever held (without RESTART it holds it all).
    assert written * page > 5 * largest
    async with sqlite_db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(identifications)) == n


async def test_lookups_share_a_snapshot_only_within_one_loop_iteration(
    sqlite_db: Database, tmp_path: Path
) -> None:
    hot = sqlite_db.sqlite_hot_path
    assert hot is not None
    other = sqlite3.connect(tmp_path / "hot.db", isolation_level=None)
    other.execute("CREATE TABLE tally (n INTEGER)")
    other.execute("INSERT INTO tally VALUES (1)")
    query = sqlite_db.prepare(sa.select(sa.table("tally", sa.column("n")).c.n))
    assert (await sqlite_db.fetch_row(query, {})).n == 1
    other.execute("UPDATE tally SET n = 2")  # committed by another connection meanwhile
    # Within the iteration that read first, the snapshot holds (the iteration's requests
    # all arrived before it began) ...
    assert (await sqlite_db.fetch_row(query, {})).n == 1
    await asyncio.sleep(0)
    # ... and it ends with the iteration: the next one sees the commit, nothing stays open.
    assert not hot.connection().in_transaction
    assert (await sqlite_db.fetch_row(query, {})).n == 2
    # A write right after a look-up ends the read transaction first.
    recorder = _recorder(sqlite_db)
    inserted, _ = await sqlite_db.record(
        recorder, _record_values(1), {"store": "store-1", "event_id": "evt-1"}
    )
    assert inserted
    await asyncio.sleep(0)
    assert not hot.connection().in_transaction
    # The snapshot never keeps another process's writer waiting: its writes commit at once.
    await sqlite_db.fetch_row(query, {})
    other.execute("PRAGMA busy_timeout=0")
    other.execute("UPDATE tally SET n = 3")
    other.close()


# --- processes: SIGKILL and several workers on one SQLite file --------------------------------


def _start(url: str, port: int, workers: int = 1) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gatewayd.central",
            "central",
            "--db",
            url,
            "--listen",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--identify-rate",
            "100000",
            "--identify-burst",
            "100000",
            "--log-level",
            "warning",
        ],
        env={**os.environ, "GATEWAYD_CENTRAL_SECRET": SECRET},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def seeded_sqlite(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    url = f"sqlite:///{tmp_path / 'seeded.db'}"
    keys = tmp_path / "keys.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatewayd.central",
            "central",
            "seed",
            "--members",
            "200",
            "--db",
            url,
            "--keys-out",
            str(keys),
        ],
        env={**os.environ, "GATEWAYD_CENTRAL_SECRET": SECRET},
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return url, json.loads(keys.read_text())


async def _hammer(
    port: int, keys: dict[str, Any], prefix: str, count: int, concurrency: int
) -> dict[str, dict[str, Any]]:
    """``count`` identifies with distinct event ids; the answers by event id."""
    gateway = keys["gateways"]["gw-1"]
    codes = keys["samples"]["member_codes"]
    answers: dict[str, dict[str, Any]] = {}
    queue = list(range(count))

    async def client(http: aiohttp.ClientSession) -> None:
        while queue:
            n = queue.pop()
            event = f"{prefix}-{n}"
            payload = {
                "token": codes[n % len(codes)],
                "store": gateway["store"],
                "terminal": "pos-1",
                "event_id": event,
            }
            async with http.post(
                f"http://127.0.0.1:{port}/v1/identify",
                json=payload,
                headers={"Authorization": f"Bearer {gateway['api_key']}"},
            ) as resp:
                assert resp.status == 200, await resp.text()
                answers[event] = await resp.json()

    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return answers


def _stored_answers(path: str) -> dict[str, tuple[int, dict[str, Any]]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT event_id, id, response FROM identifications").fetchall()
    finally:
        conn.close()
    return {event: (row_id, json.loads(text)) for event, row_id, text in rows}


async def test_answered_records_survive_sigkill(seeded_sqlite: tuple[str, dict[str, Any]]) -> None:
    url, keys = seeded_sqlite
    port = free_port()
    proc = _start(url, port)
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30)
        answers = await _hammer(port, keys, "crash", 300, 16)
    finally:
        proc.send_signal(signal.SIGKILL)  # no shutdown, no final flush or checkpoint
        proc.wait(timeout=20)
    stored = _stored_answers(url.removeprefix("sqlite:///"))
    for event, body in answers.items():
        row_id, response = stored[event]
        assert row_id == body["identification_id"]
        assert {**response, "identification_id": row_id} == body
    # After a restart, replays get the stored answers.
    port = free_port()
    proc = _start(url, port)
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30)
        gateway = keys["gateways"]["gw-1"]
        event = "crash-7"
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}/v1/identify",
                json={
                    "token": keys["samples"]["member_codes"][1],  # another token: still a replay
                    "store": gateway["store"],
                    "terminal": "pos-1",
                    "event_id": event,
                },
                headers={"Authorization": f"Bearer {gateway['api_key']}"},
            ) as resp,
        ):
            assert resp.status == 200 and await resp.json() == answers[event]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def test_two_workers_on_one_sqlite_file_record_each_event_once(
    seeded_sqlite: tuple[str, dict[str, Any]],
) -> None:
    url, keys = seeded_sqlite
    port = free_port()
    proc = _start(url, port, workers=2)
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30)
        first = await _hammer(port, keys, "w", 300, 24)
        again = await _hammer(port, keys, "w", 300, 24)  # every one a replay
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert first == again
    stored = _stored_answers(url.removeprefix("sqlite:///"))
    assert len(stored) == 300
    assert sorted(row_id for row_id, _ in stored.values()) == sorted(
        body["identification_id"] for body in first.values()
    )


async def test_the_started_heap_is_frozen_and_young_collections_are_rarer(central: Any) -> None:
    # ``central`` started the app in this process: its start-up objects are out of the
    # collector's way, and young collections wait for GC_YOUNG_THRESHOLD allocations.
    assert gc.get_freeze_count() > 10_000
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD > 700
