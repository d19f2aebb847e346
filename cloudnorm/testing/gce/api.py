"""The local Compute Engine: compute v1 REST on 127.0.0.1, answering as Google does.

What it serves (under ``/compute/v1/``) is what cloudnorm and the SSH data plane use:
projects (with their common instance metadata), zones, images (``get``, ``list``,
``getFromFamily``), machine types, networks, subnetworks, firewalls, instances (``insert``,
``get``, ``list``, ``delete``, ``aggregatedList``, ``getSerialPortOutput``,
``getGuestAttributes``), disks, and zone and global operations (``get`` and ``wait``). It
checks requests the way GCE does (names, labels, metadata keys, machine types, images, the
subnetwork a custom network needs, the CPUS quota) and answers errors in Google's shape::

    {"error": {"code": 404, "message": "...", "errors": [{"message": "...",
               "domain": "global", "reason": "notFound"}]}}

Writes return Operations that finish a moment later: an instance goes PROVISIONING ->
STAGING -> RUNNING (its insert operation is DONE then) and, deleted, STOPPING -> gone. Time
moves on lazily, whenever a request arrives, so nothing runs between requests.

Guest attributes are what the guest writes to its metadata server
(``instance/guest-attributes/<namespace>/<key>``): the data plane makes those writes, on the
instance's behalf, with a ``PUT`` to ``.../instances/<name>/guest-attributes/<ns>/<key>``
(JSON ``{"value": ...}``), which the real Compute API does not have. They are stored only
where the instance's metadata (else the project's) says ``enable-guest-attributes=TRUE``.

Every request is logged as one JSON line (the OpenStack sandbox's format, read with
:func:`cloudnorm.testing.request_log.read_requests`); requests carrying the header
``X-Cloudnorm-Agent: dataplane`` are logged under service ``compute-dataplane``.

The code is split by role; this module gathers the names the sandbox and the tests use:

- :mod:`.common`: :class:`ApiError` and the shapes of Google's errors, names, timestamps;
- :mod:`.filters`: list filters (:func:`compile_filter`) and pages;
- :mod:`.state`: the stores, the clock and the Operations;
- :mod:`.images`, :mod:`.networks` (with firewalls), :mod:`.instances` (with disks) and
  :mod:`.guest_attributes`: what each kind of resource does;
- :mod:`.compute`: :class:`Compute`, all of them seeded from :mod:`.catalog`;
- :mod:`.routes`: :class:`Api`, the REST routes;
- :mod:`.server`: :class:`Server`, its request handler, and :class:`Fault`.
"""

from cloudnorm.testing.gce.common import ApiError
from cloudnorm.testing.gce.compute import Compute
from cloudnorm.testing.gce.filters import compile_filter
from cloudnorm.testing.gce.routes import Api
from cloudnorm.testing.gce.server import Fault, Server

__all__ = ["Api", "ApiError", "Compute", "Fault", "Server", "compile_filter"]
