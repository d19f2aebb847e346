"""Prepare Nova's databases as an operator does, in one interpreter.

``nova_setup.py NOVA_CONF CELL0_URL``: the ``nova-manage`` commands of a new deployment,

    nova-manage api_db sync
    nova-manage cell_v2 map_cell0 --database_connection CELL0_URL
    nova-manage db sync                  # cell1 ([database]) and cell0
    nova-manage cell_v2 create_cell --name cell1 --transport-url fake://nowhere/

each of which would otherwise pay Nova's two to three seconds of start-up. The compute
host is mapped to cell1 when it starts (``services/run_nova.py``), as
``nova-manage cell_v2 discover_hosts`` would map it.
"""

import sys

from nova import config, objects
from nova.cmd import manage

# Nova's in-process messaging, as the launcher runs it; cells name their bus.
TRANSPORT_URL = "fake://nowhere/"

if len(sys.argv) != 3:
    sys.exit(__doc__)
config_file, cell0_url = sys.argv[1:]
config.parse_args(["nova-manage", "--config-file", config_file])
objects.register_all()


def check(what: str, code) -> None:
    if code not in (None, 0):
        sys.exit(f"nova setup: {what} failed with {code}")
    print(f"nova setup: {what}", flush=True)


check("api_db sync", manage.ApiDbCommands().sync())
cells = manage.CellV2Commands()
check("cell_v2 map_cell0", cells.map_cell0(database_connection=cell0_url))
check("db sync (cell1 and cell0)", manage.DbCommands().sync())
check("cell_v2 create_cell cell1", cells.create_cell(
    name="cell1", database_connection=config.CONF.database.connection,
    transport_url=TRANSPORT_URL))
