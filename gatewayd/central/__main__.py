"""``python -m gatewayd.central …``: the ``central`` command without the gatewayd root."""

from __future__ import annotations

import argparse
import sys

from .cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gatewayd")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    register(subparsers)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_usage(sys.stderr)
        return 2
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
