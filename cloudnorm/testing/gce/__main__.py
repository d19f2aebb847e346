"""``python -m cloudnorm.testing.gce [--workdir DIR] -- COMMAND``: run COMMAND against a
local Compute Engine (see :func:`cloudnorm.testing.gce.run`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cloudnorm.testing.gce.sandbox import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cloudnorm.testing.gce",
        description="Run COMMAND against a local Compute Engine on 127.0.0.1.")
    parser.add_argument("--workdir", type=Path, help="where state goes (default: temporary)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command to run, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    return run(command, args.workdir)


if __name__ == "__main__":
    sys.exit(main())
