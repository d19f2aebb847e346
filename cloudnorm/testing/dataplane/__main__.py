"""python -m cloudnorm.testing.dataplane install"""

from __future__ import annotations

import argparse
import sys

from cloudnorm.testing.dataplane.install import InstallError, ensure_cloud_init, ensure_openssh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudnorm.testing.dataplane")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="install openssh-server and sudo if missing, and unpack "
                                   "cloud-init for the nodes (never installed on this machine)")
    parser.parse_args(argv)
    try:
        ensure_openssh()
        tree = ensure_cloud_init()
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("openssh-server and sudo are installed")
    print(f"cloud-init for the nodes is unpacked in {tree}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
