"""The README's first command: the demo shows live identify events, then stops cleanly."""

from __future__ import annotations

import subprocess
import sys


def test_demo_prints_live_events() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gatewayd", "demo", "--interval", "0.3", "--duration", "3"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "local API   http://127.0.0.1:" in out
    assert "device lane1-scanner is online" in out
    for kind in ("phone", "wechat_payment_code", "member_code", "unionpay_payment_code"):
        assert kind in out
    assert "13800138000" not in out  # the table masks tokens
    assert "Traceback" not in result.stderr
