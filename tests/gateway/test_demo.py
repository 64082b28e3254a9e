"""The README's first command: central, a gateway and simulated devices, resolving live."""

from __future__ import annotations

import subprocess
import sys


def test_demo_resolves_members_live() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gatewayd", "demo", "--interval", "0.5", "--duration", "8"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "central API   http://127.0.0.1:" in out
    assert "local API     http://127.0.0.1:" in out
    for device in ("lane1-scanner", "lane1-msr", "lane1-idcard", "counter-modem", "lane1-face"):
        assert f"device {device} is online" in out
    resolved = [line for line in out.splitlines() if " resolved " in line]
    kinds = {kind for line in resolved for kind in
             ("card_number", "member_code", "phone", "wechat_payment_code", "id_number")
             if f" {kind} " in line}
    assert kinds >= {"card_number", "member_code", "phone", "wechat_payment_code"}
    assert all("Member " in line for line in resolved)
    assert "134567890123456789" not in out  # the table masks tokens
    assert "Traceback" not in result.stderr
