"""Keystone's public WSGI application, served on loopback for the sandbox."""

import os
from pathlib import Path

from _launch import parse_args, serve_threaded
from _request_log import RequestLog

args = parse_args("keystone")
os.environ["OS_KEYSTONE_CONFIG_FILES"] = str(Path(args.config_dir) / "keystone.conf")

from keystone.server.wsgi import initialize_public_application  # noqa: E402

app = initialize_public_application()
serve_threaded("keystone", RequestLog(app, "keystone", args.request_log), args)
