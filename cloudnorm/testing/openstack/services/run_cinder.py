"""Cinder for the sandbox: cinder-api, cinder-scheduler and cinder-volume in one process.

Process layout: a deployment runs three programs that talk over a message bus. Here they
are the same three Cinder services (``cinder.service.Service`` for the scheduler and the
volume backend, the ``osapi_volume`` paste application for the API), created as their own
``cinder-*`` commands create them, in one eventlet process with oslo.messaging's
in-process ``fake://`` transport (as Nova's harness runs Nova): every RPC cast and call
between them goes through oslo.messaging and Cinder's RPC APIs, only without a broker.
One process (about 150 MB resident) instead of three that would each import all of
Cinder, and no message broker to run.

Backend: ``services/cinder_driver.py`` (Cinder's ``FakeLoggingVolumeDriver``, shipped in
the wheel): no kernel block device, iSCSI target or LVM. Its connection info is what
Cinder's fake driver gives (``driver_volume_type: iscsi``), which Nova's fake virt driver
records as attached. Database: the sandbox's PostgreSQL (SQLite only as its fallback),
migrated with ``cinder-manage db sync``.
"""

# Cinder's services run on eventlet; patching must come before anything creates threads.
from cinder import monkey_patch  # isort: skip

monkey_patch.patch()

# psycopg2 waits for PostgreSQL in C; made green, a query yields to the other green
# threads (API requests, the volume service) instead of blocking the whole process.
from eventlet.support import psycopg2_patcher  # noqa: E402  isort: skip

psycopg2_patcher.make_psycopg_green()

import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from _launch import announce, parse_args  # noqa: E402
from _request_log import RequestLog  # noqa: E402

args = parse_args("cinder")

import cinder_driver  # noqa: E402
from cinder import coordination, objects, rpc, service, version  # noqa: E402
from cinder.common import config, constants  # noqa: E402
from cinder.image import image_utils  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_log import log as oslo_logging  # noqa: E402
from oslo_service import wsgi  # noqa: E402

CONF = cfg.CONF
BACKEND = "fake"  # the one section of enabled_backends in cinder.conf


class OneOfSeveralServices(service.Service):
    """A Cinder service that shares its process with another.

    ``Service.service_id`` is a class attribute: one service per process, as Cinder's
    commands run them. Each service's heartbeat (``report_state``) reads it to find its
    own database row, so with two in a process both would beat for the last one created
    and the volume service would look down to the scheduler after ``service_down_time``.
    The heartbeat reads it before its first I/O, so setting it just before is enough under
    eventlet; afterwards it goes back to :attr:`resident_id`, the volume service's, which
    the cleanup records (``workers``) should carry.
    """

    resident_id: int | None = None

    def report_state(self) -> None:
        service.Service.service_id = self.origin_service_id
        try:
            super().report_state()
        finally:
            service.Service.service_id = OneOfSeveralServices.resident_id


def main() -> None:
    objects.register_all()
    CONF(["--config-file", str(Path(args.config_dir) / "cinder.conf")], project="cinder",
         version=version.version_string())
    config.set_middleware_defaults()
    oslo_logging.setup(CONF, "cinder")
    # The whole image-to-volume path of Cinder runs, but qemu-img is not installed.
    image_utils.qemu_img_info = cinder_driver.qemu_img_info
    rpc.init(CONF)
    coordination.COORDINATOR.start()

    # The volume service first: the scheduler, starting, asks every volume service for
    # its capabilities and waits for the first answer before it schedules anything.
    volume = OneOfSeveralServices.create(host=f"{CONF.host}@{BACKEND}", service_name=BACKEND,
                                         binary=constants.VOLUME_BINARY, coordination=True)
    volume.start()
    scheduler = OneOfSeveralServices.create(binary=constants.SCHEDULER_BINARY)
    scheduler.start()
    OneOfSeveralServices.resident_id = service.Service.service_id = volume.origin_service_id

    app = RequestLog(wsgi.Loader(CONF).load_app(name="osapi_volume"), "cinder",
                     args.request_log)

    import eventlet
    import eventlet.wsgi

    # A green server, as the services themselves are green threads.
    sock = eventlet.listen((args.host, args.port))
    announce("cinder", args)
    eventlet.wsgi.server(sock, app, log_output=False)


try:
    main()
except BaseException:
    import traceback

    traceback.print_exc(file=sys.__stderr__)
    sys.__stderr__.flush()
    # Cinder's own threads may outlive a normal exit: the sandbox must see this one fail.
    os._exit(1)
