"""Command line and HTTP serving shared by the service launchers.

Launchers run inside the backends' own virtualenv, so this module uses only the
standard library and what the OpenStack services themselves install.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

STARTED = time.time()


def parse_args(service: str, extra=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"{service} launcher")
    parser.add_argument("--config-dir", required=True,
                        help="rendered configuration of this service")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--request-log", required=True,
                        help="JSON lines file shared by all services")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    # oslo.config parses sys.argv on its own; our options would be rejected there.
    del sys.argv[1:]
    _exit_with_parent()
    return args


def _exit_with_parent() -> None:
    """End this service when the process that started it is gone.

    Services run in their own session so that they can be stopped as a group; the price is
    that nothing stops them if their parent is killed outright (SIGKILL, a crashed test
    runner). Orphans are re-parented, which changes our parent pid.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def announce(service: str, args: argparse.Namespace) -> None:
    print(
        f"{service} serving on http://{args.host}:{args.port} "
        f"(pid {os.getpid()}, ready after {time.time() - STARTED:.1f}s)",
        file=sys.__stderr__,
        flush=True,
    )


def serve_threaded(service: str, app, args: argparse.Namespace) -> None:
    """Serve with a thread per request; for services that do not use eventlet."""
    from werkzeug.serving import make_server

    server = make_server(args.host, args.port, app, threaded=True)
    announce(service, args)
    server.serve_forever()
