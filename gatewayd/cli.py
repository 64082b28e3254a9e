"""The ``gatewayd`` command line.

Exit codes: 0 success, 1 bad input data (``decode``), 2 bad configuration or usage.
Configuration errors print ``FILE: key: problem`` lines and never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from gatewayd import __version__
from gatewayd.errors import ConfigError, GatewayError, PluginError

EXIT_OK, EXIT_DATA, EXIT_CONFIG = 0, 1, 2
DECODE_PROTOCOLS = ("token", "msr", "idcard", "callerid", "callerid-fsk", "callerid-dtmf")


def _print_config_error(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(f"{exc.source}: {problem}", file=sys.stderr)
    return EXIT_CONFIG


def cmd_run(args: argparse.Namespace) -> int:
    from gatewayd.config import load_settings
    from gatewayd.daemon import Gateway
    from gatewayd.fleet_apply import recover_at_startup, reexec
    from gatewayd.logging import configure_logging

    overrides: dict[str, dict[str, Any]] = {}
    if args.mqtt_url:
        overrides.setdefault("mqtt", {})["url"] = args.mqtt_url
    if args.http_listen:
        overrides.setdefault("http", {})["listen"] = args.http_listen
    if args.log_level:
        overrides.setdefault("gateway", {})["log_level"] = args.log_level
    try:
        settings = load_settings(args.config, overrides=overrides)
        configure_logging(settings.gateway.log_level)
        if recover_at_startup(settings):  # a fleet bundle was rolled back (docs/fleet.md)
            settings = load_settings(args.config, overrides=overrides)
        gateway = Gateway(settings, config_path=Path(args.config))
    except ConfigError as exc:
        return _print_config_error(exc)
    except PluginError as exc:
        print(f"{args.config}: plugins: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        asyncio.run(gateway.run())
    except GatewayError as exc:
        print(f"gatewayd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if gateway.restart_requested:
        reexec()  # a fleet bundle needs a fresh process; does not return
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    from gatewayd.config import load_settings
    from gatewayd.daemon import build_specs, load_plugins
    from gatewayd.logging import configure_logging
    from gatewayd.profiles import load_profiles

    configure_logging("error")
    try:
        settings = load_settings(args.file)
        plugins = load_plugins(settings)
        build_specs(settings, plugins.driver_classes(), load_profiles(settings.profiles_dir))
    except ConfigError as exc:
        return _print_config_error(exc)
    except PluginError as exc:
        print(f"{args.file}: plugins: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"{args.file}: ok ({len(settings.devices)} devices, plugins: "
        f"{', '.join(plugins.names()) or 'none'})"
    )
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from gatewayd.events import DeviceStatus, IdentifyEvent

    model: type[IdentifyEvent] | type[DeviceStatus]
    model = IdentifyEvent if args.what == "event" else DeviceStatus
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    print(json.dumps(schema, indent=2, ensure_ascii=False))
    return EXIT_OK


def _open_input(path: str | None) -> Any:
    if path in (None, "-"):
        return sys.stdin.buffer
    return open(path, "rb")


def decode_tokens(stream: Any, method: str, out: TextIO, err: TextIO) -> int:
    """``gatewayd decode token``: one string per line in, one JSON object per line out."""
    from gatewayd.protocols.tokens import TokenError, classify

    status = EXIT_OK
    for number, raw in enumerate(stream, start=1):
        line = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        try:
            token = classify(line, method)
        except TokenError as exc:
            print(f"error: line {number}: {exc}", file=err)
            status = EXIT_DATA
            continue
        print(json.dumps(token.as_dict(), ensure_ascii=False), file=out, flush=True)
    return status


def cmd_decode(args: argparse.Namespace) -> int:
    try:
        stream = _open_input(args.file)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATA
    with stream:
        if args.protocol == "token":
            return decode_tokens(stream, args.method, sys.stdout, sys.stderr)
        from gatewayd.decode import run_decode

        code: int = run_decode(args.protocol, stream, args.hex, sys.stdout, sys.stderr)
        return code


def cmd_watch(args: argparse.Namespace) -> int:
    from gatewayd.watch import watch

    try:
        return asyncio.run(watch(args))
    except KeyboardInterrupt:
        return EXIT_OK
    except ConfigError as exc:
        return _print_config_error(exc)


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.kind == "card":
        from gatewayd.vpcd_card import run_card_simulator

        try:
            return run_card_simulator(args)
        except KeyboardInterrupt:
            return EXIT_OK
    from gatewayd.simulate import run_simulator

    try:
        return run_simulator(args)
    except KeyboardInterrupt:
        return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from gatewayd.demo import run_demo

    try:
        return asyncio.run(run_demo(args))
    except KeyboardInterrupt:
        return EXIT_OK


def cmd_devices(args: argparse.Namespace) -> int:
    from gatewayd.discovery import discover, print_devices
    from gatewayd.profiles import load_profiles

    try:
        profiles = load_profiles(Path(args.profiles) if args.profiles else None)
    except ConfigError as exc:
        return _print_config_error(exc)
    print_devices(discover(profiles), sys.stdout, args.json)
    return EXIT_OK


def cmd_profiles_check(args: argparse.Namespace) -> int:
    from gatewayd.profiles import check_profiles

    return check_profiles(Path(args.dir) if args.dir else None, sys.stdout, sys.stderr)


def build_parser(with_central: bool = True) -> argparse.ArgumentParser:
    """The whole CLI. ``with_central=False`` leaves central's modules (SQLAlchemy…) unloaded,
    so the store daemon does not carry them in memory."""
    parser = argparse.ArgumentParser(prog="gatewayd", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"gatewayd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the gateway daemon")
    run.add_argument("--config", "-c", required=True, help="gatewayd.toml")
    run.add_argument("--mqtt-url", help="override [mqtt] url")
    run.add_argument("--http-listen", help="override [http] listen")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=cmd_run)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file")
    check.set_defaults(func=cmd_config_check)

    schema = sub.add_parser("schema", help="print a JSON Schema generated from the code")
    schema.add_argument("what", choices=["event", "device"])
    schema.set_defaults(func=cmd_schema)

    decode = sub.add_parser("decode", help="decode captures: one JSON object per item")
    decode.add_argument("protocol", choices=DECODE_PROTOCOLS)
    decode.add_argument("file", nargs="?", default="-", help="input file, or - for stdin")
    decode.add_argument("--hex", action="store_true", help="input is hex text")
    decode.add_argument("--method", default="barcode", help="for token: how it was read")
    decode.set_defaults(func=cmd_decode)

    watch = sub.add_parser("watch", help="show identify events and device states live")
    watch.add_argument("--config", "-c", help="read broker, store and HTTP from this file")
    watch.add_argument("--mqtt", help="broker URL, e.g. mqtt://127.0.0.1:1883")
    watch.add_argument("--store", help="store id (with --mqtt); default: every store")
    watch.add_argument("--http", help="gateway HTTP base URL: use SSE instead of MQTT")
    watch.add_argument("--token", help="bearer token for --http")
    watch.add_argument("--terminal", help="only this terminal")
    watch.add_argument("--json", action="store_true", help="JSON lines for machines")
    watch.add_argument("--count", type=int, default=0, help="exit after N events")
    watch.set_defaults(func=cmd_watch)

    simulate = sub.add_parser("simulate", help="play a device on a pseudo-terminal")
    simulate.add_argument("kind", help="scanner, msr, idcard, modem, face, palm or card")
    simulate.add_argument("--link", help="also create this symlink to the port")
    simulate.add_argument("--code", action="append", default=[], help="code to send")
    simulate.add_argument("--interval", type=float, default=2.0, help="seconds between codes")
    simulate.add_argument("--repeat", type=int, default=0, help="cycles (0: forever)")
    simulate.add_argument("--stdin", action="store_true", help="send each stdin line")
    simulate.add_argument("--card", help="idcard: JSON file of the card (default: a demo card)")
    simulate.add_argument("--baud", type=int, default=115200, help="idcard: the reader's baud rate")
    simulate.add_argument(
        "--pace", action="store_true", help="idcard: send bytes no faster than the baud rate"
    )
    simulate.add_argument("--number", default="13800138000", help="modem: the caller's number")
    simulate.add_argument("--caller-name", help="modem: the caller's name (NAME line)")
    simulate.add_argument("--password", help="modem: digits the caller types when answered")
    simulate.add_argument("--flavour", choices=("conexant", "usr"), default="conexant")
    simulate.add_argument(
        "--line", choices=("fsk", "dtmf"), default="fsk", help="modem: caller-ID signalling"
    )
    simulate.add_argument(
        "--ring-period", type=float, default=1.0, help="modem: seconds between RINGs"
    )
    simulate.add_argument("--uid", help="card: the UID in hex (default 04A1B2C3)")
    simulate.add_argument("--block", action="append", default=[], metavar="N=HEX",
                          help="card: MIFARE block N holds these 16 bytes")
    simulate.add_argument("--reader", type=int, default=0, choices=[0, 1],
                          help="card: vpcd reader (0: Virtual PCD 00 00)")
    simulate.add_argument("--hold", type=float, default=2.0,
                          help="card: seconds the card stays on the reader")
    simulate.set_defaults(func=cmd_simulate)

    demo = sub.add_parser("demo", help="a whole gateway with simulated devices, live")
    demo.add_argument("--interval", type=float, default=3.0, help="seconds between scans")
    demo.add_argument("--duration", type=float, default=0, help="stop after N seconds")
    demo.add_argument("--http-port", type=int, default=0, help="local API port (default: free)")
    demo.set_defaults(func=cmd_demo)

    devices = sub.add_parser("devices", help="list attached devices and their profiles")
    devices.add_argument("--json", action="store_true")
    devices.add_argument("--profiles", help="profiles folder (default: the bundled profiles)")
    devices.set_defaults(func=cmd_devices)

    profiles = sub.add_parser("profiles", help="device profile tools")
    profiles_sub = profiles.add_subparsers(dest="profiles_command", required=True)
    pcheck = profiles_sub.add_parser("check", help="validate firmware profiles")
    pcheck.add_argument("dir", nargs="?", help="folder (default: the bundled profiles)")
    pcheck.set_defaults(func=cmd_profiles_check)

    from gatewayd.fleet import register_cli as register_fleet

    register_fleet(sub)

    if with_central:
        from gatewayd.central.cli import register as register_central

        register_central(sub)
    else:
        sub.add_parser("central", help="the chain's central membership API (see its --help)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(with_central=bool(argv) and argv[0] in ("central", "-h", "--help"))
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except BrokenPipeError:
        return EXIT_OK
    return result


if __name__ == "__main__":
    sys.exit(main())
