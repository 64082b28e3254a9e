"""The durable outbox: ordered, keyed, bounded, and intact after kill -9."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from gatewayd.outbox import Outbox


def test_order_keys_ack_and_retry(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3")
    assert box.put("identify", "e1", {"n": 1})
    assert box.put("identify", "e2", {"n": 2})
    assert not box.put("identify", "e1", {"n": 1})  # the same key twice keeps one row
    assert box.depth == 2
    items = box.peek(10)
    assert [i.key for i in items] == ["e1", "e2"]
    box.failed([items[0].id])
    assert box.peek(1)[0].attempts == 1
    box.ack([items[0].id])
    assert [i.key for i in box.peek(10)] == ["e2"] and box.depth == 1
    box.close()
    reopened = Outbox(tmp_path / "outbox.sqlite3")
    assert reopened.depth == 1 and reopened.peek(1)[0].payload == {"n": 2}


def test_bounded_by_count_and_age_with_drop_counter(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_items=5, max_age=60)
    for n in range(8):
        box.put("identify", f"e{n}", {"n": n}, now=1000.0 + n)
    assert box.depth == 5 and box.dropped == 3
    assert [i.payload["n"] for i in box.peek(10)] == [3, 4, 5, 6, 7]
    assert box.expire(now=1000.0 + 64.5) == 2  # e3 and e4 are older than 60 s
    assert box.dropped == 5
    assert Outbox(tmp_path / "o.sqlite3").dropped == 5  # persisted


WRITER = """
import sys
from pathlib import Path
from gatewayd.outbox import Outbox
box = Outbox(Path(sys.argv[1]))
n = 0
while True:
    box.put("identify", f"e{n}", {"n": n})
    print(n, flush=True)
    n += 1
"""


def test_survives_kill_9_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                              text=True)
    assert writer.stdout is not None
    acknowledged = -1
    deadline = time.monotonic() + 20
    while acknowledged < 2000 and time.monotonic() < deadline:
        acknowledged = int(writer.stdout.readline())
    writer.kill()
    writer.wait()
    box = Outbox(path)
    rows = box.peek(1_000_000)
    numbers = [r.payload["n"] for r in rows]
    # Everything the writer reported as written is there, in order, with no gaps.
    assert numbers[: acknowledged + 1] == list(range(acknowledged + 1))
    assert numbers == list(range(len(numbers)))
    assert box.depth == len(numbers)
