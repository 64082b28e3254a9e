"""Signed fleet bundles: configuration, firmware profiles and plugin files pushed from HQ.

Pure functions used by both sides: the HQ command line (``gatewayd fleet keygen | bundle |
verify``), central (which only checks a bundle's shape and targets: it never holds a key) and
the gateway (which verifies everything before touching a file, see ``fleet_apply``).

A bundle is one JSON document::

    {"format": "gatewayd-bundle-1",
     "manifest": "<base64 of the manifest's JSON bytes>",
     "signature": "<base64 Ed25519 signature of exactly those bytes>",
     "files": {"config": "<base64>", "profiles/x.toml": "<base64>", "plugins/y.py": "<base64>"}}

The signature covers the manifest bytes as sent (so no canonical JSON is needed), and the
manifest lists the SHA-256 and size of every file, so the files are covered too. The manifest:
``serial`` (an integer that must grow from bundle to bundle: replays and downgrades are
refused), ``created``/``expires`` (Unix seconds), ``key_id`` (which key signed), ``targets``
(``gateways``, ``stores`` or ``all``) and ``files``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# cryptography is imported where keys are used, not at start: a gateway that never receives a
# bundle does not carry its Rust bindings (several MB of RSS).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

BUNDLE_FORMAT = "gatewayd-bundle-1"
CONFIG_PATH = "config"
MAX_FILES = 64
MAX_FILE_BYTES = 256 * 1024
DEFAULT_VALIDITY = 7 * 86400
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"
_PROFILE_PATH = re.compile(rf"^profiles/{_NAME}\.toml$")
_PLUGIN_PATH = re.compile(rf"^plugins/{_NAME}\.py$")
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class BundleRejected(Exception):
    """A bundle that must not be applied. ``reason`` is a stable code HQ can act on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Bundle:
    """A bundle whose structure, hashes and (when checked) signature are sound."""

    manifest: dict[str, Any]
    files: dict[str, bytes]
    raw: dict[str, Any]

    @property
    def serial(self) -> int:
        return int(self.manifest["serial"])

    @property
    def key_id(self) -> str:
        return str(self.manifest["key_id"])

    def targets(self, gateway_id: str, store_id: str) -> bool:
        """Whether this bundle is meant for that gateway of that store."""
        t = self.manifest["targets"]
        return bool(t.get("all")) or gateway_id in t["gateways"] or store_id in t["stores"]

    @property
    def has_plugins(self) -> bool:
        return any(p.startswith("plugins/") for p in self.files)


# -- keys ---------------------------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: 16 hex of the SHA-256 of its raw bytes."""
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_text(public: Ed25519PublicKey) -> str:
    """The raw 32-byte key in base64: one line, pasted into ``[fleet] trusted_keys``."""
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def generate_keys(out_dir: Path) -> tuple[Path, Path]:
    """Write ``fleet.key`` (PKCS#8 PEM, mode 0600) and ``fleet.pub`` (base64) into ``out_dir``.

    Refuses to overwrite an existing private key: losing one means re-keying every gateway.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / "fleet.key", out_dir / "fleet.pub"
    if private_path.exists():
        raise FileExistsError(f"{private_path} exists; not overwriting a signing key")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_text(public_key_text(key.public_key()) + "\n")
    return private_path, public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from its base64 text (as ``fleet.pub`` holds it)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


def load_trusted_keys(entries: tuple[str, ...] | list[str]) -> dict[str, Ed25519PublicKey]:
    """``[fleet] trusted_keys``: each entry is base64 key text or a path to a ``.pub`` file."""
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in entries:
        try:
            public = parse_public_key(entry)  # base64 may contain "/": try it first
        except ValueError:
            try:
                text = Path(entry).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(
                    f"{entry[:60]!r}: not a base64 key nor a key file ({exc})"
                ) from None
            public = parse_public_key(text)
        keys[key_id(public)] = public
    return keys


# -- building -----------------------------------------------------------------------------------


def bundle_path_for(kind: str, source: Path) -> str:
    """The in-bundle path of a file given to ``gatewayd fleet bundle``."""
    if kind == "config":
        return CONFIG_PATH
    return f"{kind}s/{source.name}"


def build_bundle(
    key: Ed25519PrivateKey,
    files: dict[str, bytes],
    *,
    serial: int | None = None,
    gateways: list[str] | None = None,
    stores: list[str] | None = None,
    all_gateways: bool = False,
    validity: int = DEFAULT_VALIDITY,
    now: float | None = None,
) -> dict[str, Any]:
    """Sign a bundle of ``files`` (in-bundle path → content) for the given targets.

    ``serial`` defaults to the current time in milliseconds, which grows by itself as long as
    one signing machine's clock does not go backwards.
    """
    now = time.time() if now is None else now
    targets = {
        "gateways": sorted(gateways or []),
        "stores": sorted(stores or []),
        "all": all_gateways,
    }
    manifest = {
        "format": BUNDLE_FORMAT,
        "serial": int(now * 1000) if serial is None else serial,
        "created": int(now),
        "expires": int(now) + validity,
        "key_id": key_id(key.public_key()),
        "targets": targets,
        "files": [
            {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for path, data in sorted(files.items())
        ],
    }
    _check_manifest(manifest)
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return {
        "format": BUNDLE_FORMAT,
        "manifest": base64.b64encode(manifest_bytes).decode(),
        "signature": base64.b64encode(key.sign(manifest_bytes)).decode(),
        "files": {path: base64.b64encode(data).decode() for path, data in sorted(files.items())},
    }


# -- reading and verifying ----------------------------------------------------------------------


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise BundleRejected("malformed", f"{what}: expected base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BundleRejected("malformed", f"{what}: not base64") from None


def check_path(path: str) -> str:
    """Only ``config``, ``profiles/NAME.toml`` and ``plugins/NAME.py``: no traversal."""
    allowed = path == CONFIG_PATH or _PROFILE_PATH.match(path) or _PLUGIN_PATH.match(path)
    if allowed and ".." not in path:
        return path
    raise BundleRejected("bad_path", f"file path not allowed: {path[:100]!r}")


def _check_manifest(manifest: Any) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleRejected("malformed", f"manifest: format must be {BUNDLE_FORMAT!r}")
    for name in ("serial", "created", "expires"):
        value = manifest.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise BundleRejected("malformed", f"manifest.{name}: a non-negative integer")
    if not isinstance(manifest.get("key_id"), str):
        raise BundleRejected("malformed", "manifest.key_id: text")
    targets = manifest.get("targets")
    if not isinstance(targets, dict) or not isinstance(targets.get("all"), bool):
        raise BundleRejected("malformed", "manifest.targets: {gateways, stores, all}")
    for name in ("gateways", "stores"):
        ids = targets.get(name)
        if not isinstance(ids, list) or not all(isinstance(i, str) and _ID.match(i) for i in ids):
            raise BundleRejected("malformed", f"manifest.targets.{name}: a list of ids")
    if not targets["all"] and not targets["gateways"] and not targets["stores"]:
        raise BundleRejected("malformed", "manifest.targets: names no gateway")
    entries = manifest.get("files")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_FILES:
        raise BundleRejected("malformed", f"manifest.files: 1 to {MAX_FILES} entries")
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise BundleRejected("malformed", "manifest.files[]: {path, sha256, size}")
        if not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("size"), int):
            raise BundleRejected("malformed", "manifest.files[]: {path, sha256, size}")
        path = check_path(entry["path"])
        if path in seen:
            raise BundleRejected("malformed", f"manifest.files: {path} twice")
        seen.add(path)
        if entry["size"] > MAX_FILE_BYTES:
            raise BundleRejected("too_large", f"{path}: over {MAX_FILE_BYTES} bytes")


def read_bundle(raw: Any) -> tuple[Bundle, bytes, bytes]:
    """Parse and check the structure and file hashes of a bundle, not its signature.

    Returns the bundle, the manifest bytes and the signature. Central uses this alone (it
    holds no keys); the gateway goes on to ``verify_bundle``.
    """
    if not isinstance(raw, dict) or raw.get("format") != BUNDLE_FORMAT:
        raise BundleRejected("malformed", f"format must be {BUNDLE_FORMAT!r}")
    manifest_bytes = _b64(raw.get("manifest"), "manifest")
    signature = _b64(raw.get("signature"), "signature")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        raise BundleRejected("malformed", "manifest: not JSON") from None
    _check_manifest(manifest)
    encoded = raw.get("files")
    if not isinstance(encoded, dict):
        raise BundleRejected("malformed", "files: an object of path → base64")
    listed = {e["path"]: e for e in manifest["files"]}
    if set(encoded) != set(listed):
        raise BundleRejected("tampered", "files differ from the manifest's list")
    files: dict[str, bytes] = {}
    for path, entry in listed.items():
        data = _b64(encoded[path], f"files[{path}]")
        if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise BundleRejected("tampered", f"{path}: content does not match its hash")
        files[path] = data
    return Bundle(manifest=manifest, files=files, raw=raw), manifest_bytes, signature


def verify_bundle(
    raw: Any,
    trusted: dict[str, Ed25519PublicKey],
    *,
    gateway_id: str | None = None,
    store_id: str | None = None,
    last_serial: int | None = None,
    now: float | None = None,
) -> Bundle:
    """Everything a gateway checks before applying, in order: structure and hashes, a trusted
    signature, expiry, target, serial. Raises ``BundleRejected`` with the first failure."""
    from cryptography.exceptions import InvalidSignature

    bundle, manifest_bytes, signature = read_bundle(raw)
    public = trusted.get(bundle.key_id)
    if public is None:
        raise BundleRejected("untrusted_key", f"key {bundle.key_id} is not trusted")
    try:
        public.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise BundleRejected("bad_signature", "the signature does not match") from None
    now = time.time() if now is None else now
    if bundle.manifest["expires"] < now:
        raise BundleRejected("expired", "the bundle's validity has ended")
    if gateway_id is not None and not bundle.targets(gateway_id, store_id or ""):
        raise BundleRejected("wrong_target", f"not meant for gateway {gateway_id}")
    if last_serial is not None and bundle.serial <= last_serial:
        raise BundleRejected(
            "replayed_serial", f"serial {bundle.serial} is not above {last_serial}"
        )
    return bundle


# -- the HQ command line: gatewayd fleet keygen | bundle | verify --------------------------------

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def _cmd_keygen(args: argparse.Namespace) -> int:
    try:
        private_path, public_path = generate_keys(Path(args.out))
    except (FileExistsError, OSError) as exc:
        print(f"gatewayd fleet keygen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"private key: {private_path} (keep it offline; mode 0600)")
    print(f"public key:  {public_path}: {public_path.read_text().strip()}")
    return EXIT_OK


def _cmd_bundle(args: argparse.Namespace) -> int:
    sources = [("config", p) for p in ([args.config] if args.config else [])]
    sources += [("profile", p) for p in args.profile] + [("plugin", p) for p in args.plugin]
    if not sources:
        print("gatewayd fleet bundle: give --config, --profile or --plugin", file=sys.stderr)
        return EXIT_USAGE
    if not (args.gateway or args.store or args.all):
        print("gatewayd fleet bundle: give --gateway, --store or --all", file=sys.stderr)
        return EXIT_USAGE
    try:
        key = load_private_key(Path(args.key))
        files = {bundle_path_for(kind, Path(p)): Path(p).read_bytes() for kind, p in sources}
        bundle = build_bundle(
            key,
            files,
            serial=args.serial,
            gateways=args.gateway,
            stores=args.store,
            all_gateways=args.all,
            validity=int(args.valid_days * 86400),
        )
    except (OSError, ValueError, BundleRejected) as exc:
        print(f"gatewayd fleet bundle: {exc}", file=sys.stderr)
        return EXIT_USAGE
    Path(args.out).write_text(json.dumps(bundle, indent=1) + "\n")
    manifest = json.loads(base64.b64decode(bundle["manifest"]))
    print(f"{args.out}: serial {manifest['serial']}, {len(files)} files, key {manifest['key_id']}")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    try:
        trusted = load_trusted_keys(args.pub)
        raw = json.loads(Path(args.bundle).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"gatewayd fleet verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        bundle = verify_bundle(raw, trusted, gateway_id=args.gateway, store_id=args.store)
    except BundleRejected as exc:
        print(f"{args.bundle}: rejected: {exc.reason}: {exc.message}")
        return EXIT_REJECTED
    print(f"{args.bundle}: ok: serial {bundle.serial}, key {bundle.key_id}, files:")
    for entry in bundle.manifest["files"]:
        print(f"  {entry['path']}  {entry['size']} bytes  sha256 {entry['sha256']}")
    return EXIT_OK


def register_cli(sub: Any) -> None:
    """Add ``gatewayd fleet …`` to the main parser's subcommands."""
    fleet = sub.add_parser("fleet", help="HQ: signing keys and signed bundles for gateways")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", required=True)
    keygen = fleet_sub.add_parser("keygen", help="make an Ed25519 signing key pair")
    keygen.add_argument("--out", required=True, help="folder for fleet.key and fleet.pub")
    keygen.set_defaults(func=_cmd_keygen)
    bundle = fleet_sub.add_parser("bundle", help="sign config, profiles and plugins")
    bundle.add_argument("--key", required=True, help="the private key (fleet.key)")
    bundle.add_argument("--config", help="a whole gatewayd.toml")
    bundle.add_argument("--profile", action="append", default=[], help="a profile .toml")
    bundle.add_argument("--plugin", action="append", default=[], help="a plugin .py")
    bundle.add_argument("--gateway", action="append", default=[], help="target gateway id")
    bundle.add_argument("--store", action="append", default=[], help="target store id")
    bundle.add_argument("--all", action="store_true", help="every gateway of the chain")
    bundle.add_argument("--serial", type=int, help="default: now in milliseconds")
    bundle.add_argument("--valid-days", type=float, default=7.0, help="default 7")
    bundle.add_argument("--out", required=True, help="the bundle file to write")
    bundle.set_defaults(func=_cmd_bundle)
    verify = fleet_sub.add_parser("verify", help="check a bundle against public keys")
    verify.add_argument("--pub", action="append", required=True, help="fleet.pub or base64")
    verify.add_argument("--gateway", help="also check the bundle targets this gateway")
    verify.add_argument("--store", help="… of this store")
    verify.add_argument("bundle")
    verify.set_defaults(func=_cmd_verify)
