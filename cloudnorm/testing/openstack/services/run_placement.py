"""Placement's WSGI application, served on loopback for the sandbox."""

import os

from _launch import parse_args, serve_threaded
from _request_log import RequestLog

args = parse_args("placement")
os.environ["OS_PLACEMENT_CONFIG_DIR"] = args.config_dir

from placement import wsgi  # noqa: E402

app = wsgi.init_application()
serve_threaded("placement", RequestLog(app, "placement", args.request_log), args)
