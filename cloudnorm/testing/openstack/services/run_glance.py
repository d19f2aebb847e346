"""Glance's image API (filesystem store), served on loopback for the sandbox."""

import os

from _launch import parse_args, serve_threaded
from _request_log import RequestLog

args = parse_args("glance")
os.environ["OS_GLANCE_CONFIG_DIR"] = args.config_dir

from glance.common import wsgi_app  # noqa: E402

app = wsgi_app.init_app()
serve_threaded("glance", RequestLog(app, "glance", args.request_log), args)
