"""Member and sales imports over real HTTP on both backends: dry runs listing every rejected
row, all-or-nothing, partial, xlsx and CSV (UTF-8 with BOM, GB18030), multipart uploads."""

from __future__ import annotations

import csv
import io
from typing import Any

import aiohttp
import openpyxl
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.central.errors import Invalid
from gatewayd.central.imports import decode_csv, read_table

HEADER = ["name", "phone", "gender", "birthday", "level", "id_number", "points",
          "balance_yuan", "card_number", "custom.shoe_size"]  # fmt: skip
GOOD = [
    ["Li Lei", "13800000011", "male", "1990-05-10", "gold", "11010519491231002X", "100",
     "50.25", "8000000000000001", "42"],
    ["Han Mei", "+8613800000012", "女", "1991-01-02", "", "", "", "", "", ""],
]  # fmt: skip
BAD = [
    ["", "13800000013", "", "", "", "", "", "", "", ""],  # no name
    ["Bad Phone", "12ab", "", "", "", "", "", "", "", ""],
    ["Bad Date", "", "", "1990-02-30", "", "", "", "", "", ""],
    ["Bad ID", "", "", "", "", "110105194912310021", "", "", "", ""],
    ["Dup Phone", "13800000011", "", "", "", "", "", "", "", ""],  # same as row 2
    ["Bad Money", "", "", "", "", "", "", "1.234", "", ""],
    ["Bad Shoe", "", "", "", "", "", "", "", "", "big"],
]  # fmt: skip


def csv_bytes(rows: list[list[str]], encoding: str = "utf-8-sig") -> bytes:
    text = "\r\n".join(",".join(cells) for cells in rows) + "\r\n"
    return text.encode(encoding)


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    wb = openpyxl.Workbook()
    sheet = wb.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


async def upload(central: Any, path: str, data: bytes, **query: str) -> tuple[int, Any]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    async with central.http.post(
        f"{central.url}{path}?{qs}",
        data=data,
        headers={"Authorization": f"Bearer {central.admin_key}"},
    ) as resp:
        return resp.status, await resp.json()


async def member_count(central: Any) -> int:
    page = await central.ok(
        "POST", "/v1/members/search", json={"filter": {"active": None}, "count": True}
    )
    return int(page["total"])


async def shoe_field(central: Any) -> None:
    await central.ok(
        "POST",
        "/v1/custom-fields",
        json={"entity": "member", "key": "shoe_size", "label": "Shoe", "type": "number",
              "searchable": True},
    )  # fmt: skip


async def test_dry_run_lists_every_rejected_row_and_writes_nothing(central: Any) -> None:
    await shoe_field(central)
    status, body = await upload(
        central, "/v1/imports/members", csv_bytes([HEADER, *GOOD, *BAD]), dry_run="true"
    )
    assert status == 200, body
    assert (body["rows"], body["accepted"], body["applied"]) == (9, 2, 0)
    rejected = {r["row"]: " ".join(r["reasons"]) for r in body["rejected"]}
    assert sorted(rejected) == [4, 5, 6, 7, 8, 9, 10]
    assert "name" in rejected[4] and "phone" in rejected[5] and "birthday" in rejected[6]
    assert "id_number" in rejected[7] and "same as row 2" in rejected[8]
    assert "balance_yuan" in rejected[9] and "shoe_size" in rejected[10]
    assert await member_count(central) == 0


async def test_all_or_nothing_then_partial(central: Any) -> None:
    await shoe_field(central)
    data = xlsx_bytes([HEADER, *GOOD, BAD[0]])
    status, body = await upload(central, "/v1/imports/members", data)
    assert (status, body["error"]["code"]) == (422, "import_rejected")
    assert [r["row"] for r in body["error"]["details"]["rejected"]] == [4]
    assert await member_count(central) == 0
    status, body = await upload(central, "/v1/imports/members", data, partial="true")
    assert status == 201, body
    assert (body["applied"], [r["row"] for r in body["rejected"]]) == (2, [4])
    page = await central.ok("POST", "/v1/members/search", json={"sort": "name"})
    han, li = page["items"]
    assert (li["name"], li["phone"], li["level"], li["points"], li["balance_fen"]) == (
        "Li Lei", "13800000011", "gold", 100, 5025,
    )  # fmt: skip
    assert li["custom"] == {"shoe_size": 42} and han["gender"] == "female"
    assert han["phone"] == "13800000012"
    full = await central.ok("GET", f"/v1/members/{li['id']}")
    assert full["id_number_last4"] == "002X" and full["cards"][0]["number"] == "8000000000000001"
    # Importing the same file again: every row now clashes with the chain.
    status, body = await upload(central, "/v1/imports/members", data, dry_run="true")
    reasons = {r["row"]: " ".join(r["reasons"]) for r in body["rejected"]}
    assert "phone: already in use" in reasons[2] and "id_number: already in use" in reasons[2]
    assert "card_number: already in use" in reasons[2]


async def test_csv_encodings_and_chinese_headers(central: Any) -> None:
    rows = [["姓名", "手机", "性别", "积分"], ["张三", "13800000021", "男", "5"]]
    status, body = await upload(central, "/v1/imports/members", csv_bytes(rows, "gb18030"))
    assert (status, body["applied"]) == (201, 1), body
    rows[1] = ["李四", "13800000022", "女", "7"]
    status, body = await upload(central, "/v1/imports/members", csv_bytes(rows, "utf-8-sig"))
    assert (status, body["applied"]) == (201, 1), body
    rows[1] = ["王五", "13800000023", "男", "9"]
    status, body = await upload(central, "/v1/imports/members", csv_bytes(rows, "utf-8"))
    assert (status, body["applied"]) == (201, 1), body
    page = await central.ok("POST", "/v1/members/search", json={"sort": "points"})
    assert [(m["name"], m["gender"], m["points"]) for m in page["items"]] == [
        ("张三", "male", 5), ("李四", "female", 7), ("王五", "male", 9),
    ]  # fmt: skip
    status, body = await upload(central, "/v1/imports/members", b"name,colour\r\nA,red\r\n")
    assert (status, body["error"]["code"]) == (422, "bad_header")
    status, body = await upload(central, "/v1/imports/members", b"PK\x03\x04garbage")
    assert (status, body["error"]["code"]) == (422, "bad_file")


async def test_multipart_upload_and_size_bound(central: Any) -> None:
    form = aiohttp.FormData()
    form.add_field("file", csv_bytes([["name"], ["Form Member"]]), filename="m.csv")
    async with central.http.post(
        central.url + "/v1/imports/members",
        data=form,
        headers={"Authorization": f"Bearer {central.admin_key}"},
    ) as resp:
        assert resp.status == 201 and (await resp.json())["applied"] == 1
    huge = b"name\r\n" + b"x" * (8 * 1024 * 1024 + 10)
    status, _ = await upload(central, "/v1/imports/members", huge)
    assert status == 413
    status, _, _ = await central.call("POST", "/v1/imports/members", "gw-1", None)
    assert status == 403


async def test_sales_import_feeds_spending_and_refuses_repeats(central: Any) -> None:
    member = await central.ok("POST", "/v1/members", json={"name": "Buyer", "phone": "13800000031"})
    header = ["ref", "store", "date", "amount_yuan", "phone"]
    rows = [
        header,
        ["r-1", "store-1", "2025-12-01 10:00", "120.50", "13800000031"],
        ["r-2", "store-2", "2025-12-03", "80", "13800000031"],
        ["r-3", "store-1", "2025-12-04", "10", ""],  # a walk-in sale
        ["r-4", "store-9", "2025-12-04", "10", ""],  # no such store
        ["r-5", "store-1", "yesterday", "10", ""],
        ["r-1", "store-1", "2025-12-05", "10", ""],  # same ref
        ["r-6", "store-1", "2025-12-05", "10", "13999999999"],  # unknown member
    ]
    status, body = await upload(central, "/v1/imports/sales", xlsx_bytes(rows), dry_run="true")
    assert status == 200
    assert [r["row"] for r in body["rejected"]] == [5, 6, 7, 8]
    status, body = await upload(central, "/v1/imports/sales", xlsx_bytes(rows))
    assert status == 422
    status, body = await upload(central, "/v1/imports/sales", xlsx_bytes(rows), partial="true")
    assert (status, body["applied"]) == (201, 3)
    [row] = (
        await central.ok("POST", "/v1/members/search", json={"filter": {"visits": {"min": 1}}})
    )["items"]
    assert (row["id"], row["visits"], row["spent_fen"], row["home_store"]) == (
        member["id"], 2, 20_050, "store-1",
    )  # fmt: skip
    assert row["last_visit_at"] == "2025-12-03T00:00:00.000Z"
    status, body = await upload(central, "/v1/imports/sales", xlsx_bytes(rows[:2]), dry_run="true")
    assert "already imported" in body["rejected"][0]["reasons"][0]


@given(st.text(max_size=50))
def test_csv_decoding_round_trips_both_encodings(text: str) -> None:
    assert decode_csv(text.encode("utf-8")) == text.removeprefix("\ufeff")
    assert decode_csv(b"\xef\xbb\xbf" + text.encode("utf-8")) == text
    try:
        encoded = text.encode("gb18030")
    except UnicodeEncodeError:
        return
    decoded = decode_csv(encoded)
    # GB18030 bytes that happen to be valid UTF-8 are read as UTF-8 (ASCII is both).
    assert decoded == text or encoded.decode("utf-8", errors="strict") == decoded


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused_cleanly(raw: bytes) -> None:
    try:
        header, rows = read_table(raw)
    except Invalid:
        return
    assert all(isinstance(line, int) and line >= 2 for line, _ in rows)
    assert isinstance(header, list)


cell_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@given(st.lists(st.lists(cell_text, min_size=2, max_size=2), min_size=1, max_size=6))
def test_csv_rows_come_back_with_their_sheet_row_numbers(rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["a", "b"], *rows])
    header, parsed = read_table(buffer.getvalue().encode("utf-8-sig"))
    assert header == ["a", "b"]
    expected = [(n, r) for n, r in enumerate(rows, start=2) if any(c.strip() for c in r)]
    assert [(n, [str(c) for c in r]) for n, r in parsed] == expected
