"""Nova for the sandbox: the real compute API, conductor, scheduler and one compute host.

Nova has no supported way to run without a hypervisor and a message bus, so this
launcher drives Nova's own functional-test harness (shipped in the nova wheel): in-process
messaging, the fake virt driver. Everything it talks to is real and reached over HTTP
through the Keystone catalog: Keystone tokens, Glance images, Neutron ports, Placement
allocations, Cinder volumes and attachments (the fake driver takes whatever connection
info Cinder's attachment API returns).

Databases: the API database, cell0 and cell1 are the PostgreSQL databases nova.conf names
(``[api_database]``, ``[database]``), migrated and mapped beforehand by
``services/nova_setup.py`` as ``nova-manage`` does; Nova uses them as a deployment does
(cells v2, no test stand-ins). Only when nova.conf names no server (the sandbox's SQLite
fallback, ``sqlite://``) does the harness keep its own in-memory SQLite databases.

The fake driver's console output is the file ``<console-dir>/<instance uuid>.log`` when it
exists, so whoever plays the guest can publish what cloud-init would print.
"""

# The functional harness's package applies eventlet monkey patching on import
# (nova.monkey_patch.patch(), as Nova's own commands do); it must come before anything
# else creates sockets, threads or locks. (``nova.tests`` alone no longer patches: a
# module-level threading.Lock of glanceclient imported unpatched then blocked the whole
# process as soon as two server creates fetched the image schema at once.)
import nova.tests.functional  # noqa: F401  isort: skip

import configparser
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path

from _launch import announce, parse_args
from _request_log import RequestLog
from eventlet.support import psycopg2_patcher
from keystoneauth1 import loading as ks_loading
from nova import context as nova_context
from nova import objects, test
from nova.db.api import api as api_db_api
from nova.db.main import api as main_db_api
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import integrated_helpers
from nova.virt import fake


def _extra_args(parser):
    parser.add_argument("--console-dir", required=True, help="guest console logs by instance uuid")
    parser.add_argument("--compute-host", default="sandbox-compute-1")


args = parse_args("nova", _extra_args)
# oslotest would arm an alarm that ends the "test" (our whole service) after this long.
os.environ.pop("OS_TEST_TIMEOUT", None)

AUTHTOKEN_SECTION = "keystone_authtoken"


def read_config(path: Path) -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.optionxform = str
    with open(path) as handle:
        config.read_file(handle)
    return config


def write_api_paste(config: configparser.ConfigParser, target: Path) -> Path:
    """Nova's own api-paste.ini with the authtoken options inlined.

    The harness never loads a nova.conf, so keystonemiddleware finds its options only in
    the filter's paste section.
    """
    source = Path(sys.prefix) / "etc" / "nova" / "api-paste.ini"
    options = [f"{key} = {value}" for key, value in config.items(AUTHTOKEN_SECTION)
               if key not in config.defaults()]
    lines = []
    for line in source.read_text().splitlines():
        lines.append(line)
        if line.strip() == "[filter:authtoken]":
            lines.extend(options)
    target.write_text("\n".join(lines) + "\n")
    return target


def console_output(self, context, instance):
    path = Path(args.console_dir) / f"{instance.uuid}.log"
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return _canned_console_output(self, context, instance)


_canned_console_output = fake.FakeDriver.get_console_output
fake.FakeDriver.get_console_output = console_output


def uses_database_server(config: configparser.ConfigParser) -> bool:
    url = config.get("api_database", "connection", fallback="sqlite://")
    return not url.startswith("sqlite")


class SandboxNova(integrated_helpers._IntegratedTestBase):
    STUB_KEYSTONE = False
    ADMIN_API = True
    # Builds run asynchronously as on a real cloud: POST returns BUILD, then ACTIVE.
    CAST_AS_CALL = False

    config: configparser.ConfigParser

    def runTest(self):  # the harness is a TestCase; it needs a test method to exist
        pass

    def setUp(self):
        # Only the base set-up: _IntegratedTestBase would add in-process stand-ins for
        # Neutron, Glance, Cinder and Placement (its CinderFixture), and the real services
        # are used instead.
        server = uses_database_server(self.config)
        if server:
            # The harness must not make its in-memory databases and cell stand-ins.
            self.USES_DB, self.USES_DB_SELF = False, True
        test.TestCase.setUp(self)
        self.policy = self.useFixture(nova_fixtures.RealPolicyFixture())
        self._apply_config()
        if server:
            self._use_database_server()
        self._setup_services()

    def _use_database_server(self):
        """The databases nova.conf names, as nova's own services configure them."""
        main_db_api.configure(test.CONF)
        api_db_api.configure(test.CONF)
        ctx = nova_context.get_admin_context()
        for cell in objects.CellMappingList.get_all(ctx):
            self.cell_mappings[cell.name] = cell
        if "cell1" not in self.cell_mappings:
            raise RuntimeError("no cell1 in the API database: services/nova_setup.py "
                               "did not run")
        # Now the harness may map the compute host to cell1 as it starts it, as
        # ``nova-manage cell_v2 discover_hosts`` does in a deployment.
        self.USES_DB = True

    def _apply_config(self):
        paste = write_api_paste(self.config, Path(args.config_dir) / "api-paste.ini")
        self.flags(api_paste_config=str(paste), group="wsgi")
        for section in self.config.sections():
            if section == AUTHTOKEN_SECTION:
                continue
            values = {key: value for key, value in self.config.items(section)
                      if key not in self.config.defaults()}
            if "auth_type" in values:
                # Credential options exist only once a plugin is chosen, which the
                # harness never does for these groups.
                ks_loading.register_auth_conf_options(test.CONF, section)
                test.CONF.register_opts(
                    ks_loading.get_auth_plugin_conf_options(values["auth_type"]), group=section)
            self.flags(group=section, **values)
        for key, value in self.config.defaults().items():
            self.flags(**{key: value})

    def _setup_compute_service(self):
        return self._start_compute(args.compute_host)


def remove_default_flavors() -> None:
    # The harness seeds m1.* flavors visible to every project; a sandbox project must see
    # only the flavors its profile defines.
    ctx = nova_context.get_admin_context()
    for flavor in objects.FlavorList.get_all(ctx):
        flavor.destroy()


def main() -> None:
    # psycopg2 waits for PostgreSQL in C; made green, a query yields to other requests as
    # PyMySQL does under eventlet in a deployment, instead of blocking the whole process.
    psycopg2_patcher.make_psycopg_green()
    SandboxNova.config = read_config(Path(args.config_dir) / "nova.conf")
    harness = SandboxNova("runTest")
    try:
        harness.setUp()
        remove_default_flavors()
    except BaseException:
        traceback.print_exc(file=sys.__stderr__)
        sys.__stderr__.flush()
        os._exit(1)
    # The harness turns warnings into errors and swallows logging; a service must not
    # fail a request over a deprecation warning, and its operator needs to see problems.
    warnings.resetwarnings()
    warnings.simplefilter("ignore")
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)
    # Nova warns about its own use of neutronclient on every call to Neutron.
    logging.getLogger("neutronclient.v2_0.client").setLevel(logging.ERROR)

    import eventlet
    import eventlet.wsgi

    app = RequestLog(harness.api_fixture.app(), "nova", args.request_log)
    # A green server: the stdlib's threaded servers would block eventlet's hub.
    sock = eventlet.listen((args.host, args.port))
    announce("nova", args)
    eventlet.wsgi.server(sock, app, log_output=False)


main()
