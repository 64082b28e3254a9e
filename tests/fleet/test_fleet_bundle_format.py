"""The bundle format's checks as pure functions: signature, hashes, paths, targets, serials."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.cli import main
from gatewayd.fleet import (
    BundleRejected,
    build_bundle,
    check_path,
    generate_keys,
    key_id,
    load_trusted_keys,
    public_key_text,
    verify_bundle,
)

KEY = Ed25519PrivateKey.generate()
TRUSTED = {key_id(KEY.public_key()): KEY.public_key()}
FILES = {"config": b"[gateway]\nid = 'gw-1'\n", "plugins/extra.py": b"X = 1\n"}


def signed(**options: Any) -> dict[str, Any]:
    options.setdefault("gateways", ["gw-1"])
    return build_bundle(KEY, dict(FILES), **options)


def reason(raw: Any, **options: Any) -> str:
    with pytest.raises(BundleRejected) as info:
        verify_bundle(raw, TRUSTED, **options)
    return info.value.reason


def test_a_signed_bundle_verifies_with_its_files() -> None:
    bundle = verify_bundle(
        signed(serial=7), TRUSTED, gateway_id="gw-1", store_id="s", last_serial=6
    )
    assert bundle.files == FILES and bundle.serial == 7 and bundle.has_plugins


def test_each_check_names_its_reason() -> None:
    other = Ed25519PrivateKey.generate()
    assert reason(build_bundle(other, dict(FILES), gateways=["gw-1"])) == "untrusted_key"
    assert reason(signed(), gateway_id="gw-2", store_id="store-9") == "wrong_target"
    assert reason(signed(serial=5), last_serial=5) == "replayed_serial"
    assert reason(signed(serial=4), last_serial=5) == "replayed_serial"
    assert reason(signed(validity=10, now=1000.0)) == "expired"
    # Targets by store and "all" are honoured.
    verify_bundle(
        signed(gateways=[], stores=["store-1"]), TRUSTED, gateway_id="x", store_id="store-1"
    )
    verify_bundle(signed(gateways=[], all_gateways=True), TRUSTED, gateway_id="x", store_id="y")


def test_a_file_changed_with_its_hash_breaks_the_signature() -> None:
    raw = signed()
    manifest = json.loads(base64.b64decode(raw["manifest"]))
    evil = b"import os\n"
    manifest["files"] = [
        {**e, "sha256": __import__("hashlib").sha256(evil).hexdigest(), "size": len(evil)}
        if e["path"] == "plugins/extra.py"
        else e
        for e in manifest["files"]
    ]
    raw["manifest"] = base64.b64encode(json.dumps(manifest).encode()).decode()
    raw["files"]["plugins/extra.py"] = base64.b64encode(evil).decode()
    assert reason(raw) == "bad_signature"


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_change_to_a_signed_bundle_is_refused(data: st.DataObject) -> None:
    raw = signed()
    field = data.draw(st.sampled_from(["manifest", "signature", "config", "plugins/extra.py"]))
    target = raw if field in ("manifest", "signature") else raw["files"]
    original = base64.b64decode(target[field])
    index = data.draw(st.integers(0, len(original) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = bytearray(original)
    changed[index] ^= flip
    target[field] = base64.b64encode(bytes(changed)).decode()
    assert reason(raw) in {
        "malformed",
        "bad_signature",
        "tampered",
        "untrusted_key",
        "bad_path",
        "too_large",
    }


@given(st.text(max_size=80))
def test_only_known_places_are_writable(path: str) -> None:
    try:
        accepted = check_path(path)
    except BundleRejected as exc:
        assert exc.reason == "bad_path"
        return
    assert accepted == path and ".." not in path and "\\" not in path
    in_profiles = path.startswith("profiles/") and path.endswith(".toml")
    in_plugins = path.startswith("plugins/") and path.endswith(".py")
    assert path == "config" or (path.count("/") == 1 and (in_profiles or in_plugins))


@pytest.mark.parametrize(
    "path",
    [
        "../etc/passwd",
        "plugins/../x.py",
        "plugins/a/b.py",
        "/etc/gatewayd.toml",
        "profiles/.toml",
        "plugins/x.sh",
        "config/../x",
        "profiles/..toml",
        "plugins/.hidden.py",
    ],
)
def test_traversal_and_other_places_are_refused(path: str) -> None:
    with pytest.raises(BundleRejected):
        check_path(path)
    with pytest.raises(BundleRejected):
        build_bundle(KEY, {path: b"x"}, gateways=["gw-1"])


def test_cli_keygen_bundle_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet", "keygen", "--out", str(tmp_path / "hq")]) == 0
    private, public = tmp_path / "hq" / "fleet.key", tmp_path / "hq" / "fleet.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert main(["fleet", "keygen", "--out", str(tmp_path / "hq")]) == 2  # never overwrites
    (tmp_path / "p.toml").write_text("id = 'x'\n")
    out = tmp_path / "b.json"
    args = [
        "fleet",
        "bundle",
        "--key",
        str(private),
        "--profile",
        str(tmp_path / "p.toml"),
        "--store",
        "store-1",
        "--serial",
        "42",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert main(["fleet", "verify", "--pub", str(public), str(out)]) == 0
    assert "serial 42" in capsys.readouterr().out
    assert (
        main(
            [
                "fleet",
                "verify",
                "--pub",
                str(public),
                "--gateway",
                "gw-1",
                "--store",
                "store-2",
                str(out),
            ]
        )
        == 1
    )
    assert "wrong_target" in capsys.readouterr().out
    stranger = public_key_text(Ed25519PrivateKey.generate().public_key())
    assert main(["fleet", "verify", "--pub", stranger, str(out)]) == 1
    assert "untrusted_key" in capsys.readouterr().out
    assert main(["fleet", "bundle", "--key", str(private), "--out", str(out)]) == 2


def test_trusted_keys_from_text_and_files(tmp_path: Path) -> None:
    _, public = generate_keys(tmp_path)
    text = public.read_text().strip()
    assert load_trusted_keys([text]).keys() == load_trusted_keys([str(public)]).keys()
    with pytest.raises(ValueError):
        load_trusted_keys(["bm90IGEga2V5"])
