"""Run a service's own management command: ``manage.py keystone|glance|placement|cinder ARGS...``.

The backends' virtualenv is built in a temporary directory and renamed into place, which
leaves its console scripts pointing at the old path; calling the entry points through the
interpreter works wherever the environment lives.
"""

import importlib
import sys

ENTRY_POINTS = {
    "keystone": "keystone.cmd.manage",
    "glance": "glance.cmd.manage",
    "placement": "placement.cmd.manage",
    "cinder": "cinder.cmd.manage",
}

if len(sys.argv) < 2 or sys.argv[1] not in ENTRY_POINTS:
    sys.exit(f"usage: manage.py {{{','.join(ENTRY_POINTS)}}} ARGS...")
service = sys.argv[1]
sys.argv = [f"{service}-manage"] + sys.argv[2:]
sys.exit(importlib.import_module(ENTRY_POINTS[service]).main())
