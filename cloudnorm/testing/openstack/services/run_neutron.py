"""Neutron's API server (ML2, router and port forwarding plugins), served on loopback.

There are no agents: ports are bound by ML2's in-tree ``test`` mechanism driver, adjusted
here so that every port binds (vif type ovs, status ACTIVE) the way a healthy cloud's do.
"""

import os

from _launch import parse_args, serve_threaded
from _request_log import RequestLog

args = parse_args("neutron")
os.environ["OS_NEUTRON_CONFIG_DIR"] = args.config_dir
# Everything, ML2 included, is in one file; Neutron would also demand plugins/ml2/ml2_conf.ini.
os.environ["OS_NEUTRON_CONFIG_FILES"] = "neutron.conf"

from neutron import server  # noqa: E402
from neutron.tests.unit.plugins.ml2.drivers import mechanism_test  # noqa: E402
from neutron_lib.api.definitions import portbindings  # noqa: E402


def _bind_port(self, context):
    segment = context.segments_to_bind[0]
    context.set_binding(
        segment["id"], portbindings.VIF_TYPE_OVS, {portbindings.CAP_PORT_FILTER: True},
        status="ACTIVE",
    )


def _skip_check(*args, **kwargs):
    # The driver's self-checks assert unit-test expectations that a running API breaks.
    return None


mechanism_test.TestMechanismDriver.bind_port = _bind_port
for _name in dir(mechanism_test.TestMechanismDriver):
    if _name.startswith("_check"):
        setattr(mechanism_test.TestMechanismDriver, _name, _skip_check)
# Its unbinding forgets a port it remembers binding; these ports were bound above, without
# its memory, so Nova unbinding a port it was given (on the server's delete) would fail.
mechanism_test.TestMechanismDriver.update_port_precommit = _skip_check

from oslo_db import exception as db_exc  # noqa: E402
from oslo_db.sqlalchemy import exc_filters  # noqa: E402
from sqlalchemy import exc as sqla_exc  # noqa: E402


# SQLite refuses a transaction that read first and then wants to write, while another
# writes, with "database is locked" at once (its busy timeout cannot help there), so two
# overlapping writes (Nova binding a port while its owner attaches a floating IP to it)
# failed with HTTP 500. A production database reports a deadlock there, which Neutron
# retries: say the same of SQLite's refusal.
@exc_filters.filters("sqlite", sqla_exc.OperationalError, r".*database is locked.*")
def _locked_is_a_deadlock(operational_error, match, engine_name, is_disconnect):
    raise db_exc.DBDeadlock(operational_error)


from neutron.server import api  # noqa: E402

app = server.boot_server(api.api_server, prog="neutron-api")
serve_threaded("neutron", RequestLog(app, "neutron", args.request_log), args)
