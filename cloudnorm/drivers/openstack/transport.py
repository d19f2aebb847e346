"""Requests to an OpenStack cloud over openstacksdk's service proxies.

Calls go through openstacksdk's authenticated proxies (compute, image, network) as
plain REST requests, so the JSON cloudnorm normalizes is the cloud's own and every
decision stays cloudnorm's: none of openstacksdk's cloud-layer guessing (``auto_ip``,
``get_server_public_ip``) is used. Here are the connection, the account's rate limit,
retries with backoff, and the translation of failures into :mod:`cloudnorm.errors`.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from cloudnorm import __version__, errors, ratelimit
from cloudnorm.drivers.openstack.config import PROVIDER
from cloudnorm.settings import CloudSettings

if TYPE_CHECKING:  # pragma: no cover
    from cloudnorm.cache import DiscoveryCache

LOG = logging.getLogger(__name__)

COMPUTE_MICROVERSION = "2.79"  # embedded flavor details (2.47), server tags (2.26)
PAGE = 1000
# Retries of one request: how many attempts, and how long all of them may take together.
ATTEMPTS = 6
RETRY_DEADLINE = 60.0
_BACKOFF_BASE, _BACKOFF_CAP = 0.25, 4.0
# Answers that mean "not now" rather than "no". 429, and 413 when it carries Retry-After,
# are rate limits: the cloud refused before acting, so even a POST may be sent again.
# The 5xx ones may come after the cloud acted: only requests safe to repeat are retried.
_TRANSIENT = frozenset({500, 502, 503, 504})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})

_QUOTA = re.compile(r"quota exceeded|exceeds? (?:the |your |allowed \w+ )?quota|over ?quota|"
                    r"quota .*(?:reached|exhausted)|maximum number of .* (?:reached|exceeded)",
                    re.I)
#: The quota a refusal names: Cinder's "exceeds allowed gigabytes quota" and "exceeded for
#: quota 'volumes'" (cinder/exception.py VolumeSizeExceedsAvailableQuota, VolumeLimitExceeded).
_QUOTA_NAME = re.compile(r"allowed (\w+) quota|for quota '(\w+)'", re.I)


class Transport:
    """One account's connection: every request of the driver goes through
    :meth:`request`, which waits its turn in the account's rate limit, retries what
    may be retried and raises cloudnorm's errors."""

    def __init__(self, settings: CloudSettings, region: Any, identity: str) -> None:
        self.settings = settings
        self.region = region
        auth = region.config.get("auth") or {}
        if "password" in str(region.config.get("auth_type") or "password") \
                and not auth.get("password"):
            # keystoneauth would find out only at the first request, with a bare Exception.
            raise errors.ConfigError(
                f"cloud '{settings.name}' ({settings.source or 'clouds.yaml'}) lacks auth "
                "settings: password; add it under auth: (or in secure.yaml), or set "
                "OS_PASSWORD", cloud=settings.name)
        self._conn: Any = None
        self._conn_lock = threading.RLock()
        self._microversion: str | None = None
        #: Where the compute API version found is kept beyond this process (see
        #: :meth:`compute_microversion`); None keeps it in this object only.
        self.cache: DiscoveryCache | None = None
        self._microversion_lock = threading.Lock()
        self.limiter = ratelimit.limiter_for(
            identity, ratelimit.for_cloud(settings, PROVIDER.writes_per_second))
        self.retries = 0  # requests sent again after a throttled or transient failure

    @property
    def conn(self) -> Any:
        """openstacksdk's connection, made on first use (importing openstack is slow)."""
        with self._conn_lock:
            if self._conn is None:
                import openstack.connection

                self._conn = openstack.connection.Connection(
                    config=self.region, app_name="cloudnorm", app_version=__version__)
            return self._conn

    def _proxy(self, service: str) -> Any:
        """openstacksdk's proxy for ``service``: made once, although threads ask at once
        (making one authenticates and discovers the service's versions)."""
        with self._conn_lock:
            return getattr(self.conn, service)

    def _auth_url(self) -> str:
        return str((self.region.config.get("auth") or {}).get("auth_url", "?"))

    @contextlib.contextmanager
    def translate(self, what: str) -> Iterator[None]:
        """Turn SDK and transport exceptions into cloudnorm errors naming what to fix."""
        from keystoneauth1 import exceptions as ksa
        from openstack import exceptions as os_exc

        name = self.settings.name
        try:
            yield
        except ksa.Unauthorized as exc:
            raise errors.AuthError(
                f"cloud '{name}' refused the credentials at {self._auth_url()} while {what}: "
                f"check username, password and project in {self.settings.source or 'clouds.yaml'}",
                cloud=name) from exc
        except ksa.EndpointNotFound as exc:
            raise errors.ServiceUnavailable(
                f"cloud '{name}' has no endpoint for {what} in its catalog ({exc}); "
                "check region_name and interface in clouds.yaml", cloud=name) from exc
        except (ksa.ConnectFailure, ksa.ConnectTimeout, ksa.DiscoveryFailure,
                ksa.UnknownConnectionError) as exc:  # the last: a reply broken off mid-way
            raise errors.ServiceUnavailable(
                f"cannot reach cloud '{name}' while {what}: {exc}; check that "
                f"{self._auth_url()} and the catalog's endpoints are reachable", cloud=name
            ) from exc
        except ksa.MissingRequiredOptions as exc:
            raise errors.ConfigError(f"cloud '{name}' lacks auth settings: {exc}",
                                     cloud=name) from exc
        except ksa.ClientException as exc:
            raise errors.ProviderError(f"cloud '{name}' failed while {what}: {exc}",
                                       cloud=name) from exc
        except (os_exc.ServiceDisabledException, os_exc.ServiceDiscoveryException) as exc:
            raise errors.ServiceUnavailable(
                f"cloud '{name}' offers no usable service for {what} ({exc}); check the "
                "region and the catalog of this cloud", cloud=name) from exc
        except os_exc.SDKException as exc:
            raise errors.ProviderError(f"cloud '{name}' failed while {what}: {exc}",
                                       cloud=name) from exc

    def request(self, service: str, method: str, path: str, *, reads_only: bool = False,
                repeatable: bool = False, **kwargs: Any) -> Any:
        """One REST call through openstacksdk's proxy; returns the decoded JSON body.

        Each attempt waits for its turn in the account's rate limit. Throttled
        answers (429, 413 with Retry-After) are retried after what the cloud asks
        for; transient failures (5xx, lost connections, garbled replies) only for
        methods that are safe to repeat. All attempts together stay within
        ``RETRY_DEADLINE``. ``reads_only`` marks a POST that changes nothing (a
        server action such as reading the console): limited and retried as a read.
        ``repeatable`` marks a write whose repetition changes nothing more (a POST that
        merges the same items): limited as a write, retried like a PUT.
        """
        from keystoneauth1 import exceptions as ksa_exc

        if service == "compute":
            kwargs.setdefault("microversion", self.compute_microversion())
        idempotent = reads_only or repeatable or method.upper() in _IDEMPOTENT
        write = not (reads_only or ratelimit.is_read(method))
        deadline = time.monotonic() + RETRY_DEADLINE
        what = f"calling {service} {method} {path.split('?')[0]}"
        for attempt in range(ATTEMPTS):
            last = attempt == ATTEMPTS - 1
            self.limiter.acquire(write, deadline)
            try:
                with self.translate(what):
                    # skip_cache: with a cache class in openstack.config's cache:
                    # section, openstacksdk would keep each GET's reply -- pickled,
                    # with the request's token -- in that store, and could hand a
                    # status poll an old reply. cloudnorm caches discovery itself.
                    resp = self._proxy(service).request(path, method, raise_exc=False,
                                                        skip_cache=True, **kwargs)
            except errors.ServiceUnavailable as exc:
                # Only a broken connection is worth another try; a missing service is not.
                lost = isinstance(exc.__cause__, ksa_exc.ConnectionError)
                if not (lost and idempotent) or last \
                        or not self._pause(attempt, None, deadline, exc):
                    raise
                continue
            status = resp.status_code
            wait = retry_after(resp.headers.get("Retry-After"))
            throttled = status == 429 or (status == 413 and wait is not None)
            if throttled:
                self.limiter.throttled(write, wait)
            if (throttled or (idempotent and status in _TRANSIENT)) and not last \
                    and self._pause(attempt, wait, deadline, f"{status} to {what}"):
                continue
            try:
                return self._decode(service, method, path, resp)
            except errors.ProviderError as exc:
                # A reply cut short or garbled on the way: a read may simply be asked again.
                if exc.status != status or status >= 400 or not idempotent or last \
                        or not self._pause(attempt, None, deadline, exc):
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _pause(self, attempt: int, wait: float | None, deadline: float, why: object) -> bool:
        """Sleep before attempt ``attempt + 1``; False when that would pass the deadline.

        The cloud's Retry-After (``wait``) wins; otherwise exponential backoff with full
        jitter, so that many clients throttled at once do not come back at once.
        """
        if wait is not None:
            delay = wait + random.uniform(0, min(1.0, wait * 0.1 + 0.1))
        else:
            delay = random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** attempt))
        if time.monotonic() + delay >= deadline:
            return False
        LOG.info("cloud '%s': %s; trying again in %.1f s", self.settings.name, why, delay)
        self.retries += 1
        time.sleep(delay)
        return True

    def _decode(self, service: str, method: str, path: str, resp: Any) -> Any:
        request_id = (resp.headers.get("x-openstack-request-id")
                      or resp.headers.get("x-compute-request-id"))
        endpoint = f"{service} {method} {path.split('?')[0]}"
        if resp.status_code >= 400:
            raise http_error(self.settings.name, resp, endpoint, request_id)
        if resp.status_code == 204 or not resp.content:
            return {}
        try:
            return resp.json()
        except ValueError:
            raise errors.ProviderError(
                f"cloud '{self.settings.name}' sent a malformed reply (not JSON) to {endpoint}",
                status=resp.status_code, request_id=request_id, endpoint=endpoint,
                cloud=self.settings.name) from None

    def compute_microversion(self) -> str:
        """The compute microversion every Nova request asks for: ours, or the cloud's
        highest where that is lower."""
        if self._microversion is not None:
            return self._microversion
        # One discovery for all threads of this driver, not one each; with a cache
        # shared between processes, one for all of them (Nova's version document is
        # the only request a process with cached discovery and a kept token would make).
        with self._microversion_lock:
            if self._microversion is None:
                if self.cache is None:
                    self._microversion = self._discover_microversion()
                else:
                    self._microversion = str(self.cache.get_or_create(
                        "api_version", "compute", self._discover_microversion))
            return self._microversion

    def _discover_microversion(self) -> str:
        with self.translate("discovering the compute API version"):
            data = self.conn.compute.get_endpoint_data()
        highest = getattr(data, "max_microversion", None)
        want = tuple(int(p) for p in COMPUTE_MICROVERSION.split("."))
        if highest and tuple(highest) < want:
            return f"{highest[0]}.{highest[1]}"
        return COMPUTE_MICROVERSION if highest else "2.1"

    def paged(self, service: str, path: str, key: str, **query: Any) -> list[dict[str, Any]]:
        """Every record of a paginated list: follows Glance's ``next`` and the
        ``<key>_links`` of Nova and Neutron, whatever page size the cloud caps at."""
        items: list[dict[str, Any]] = []
        query = {"limit": PAGE, **query}
        for _ in range(10_000):  # bounded: 10 million records is beyond any real account
            sep = "&" if "?" in path else "?"
            body = self.request(service, "GET", f"{path}{sep}{urlencode(query, doseq=True)}")
            page = body.get(key) if isinstance(body, dict) else None
            if not isinstance(page, list):
                raise errors.ProviderError(
                    f"cloud '{self.settings.name}' sent a malformed reply to {service} GET {path}:"
                    f" no '{key}' list", endpoint=f"{service} GET {path}",
                    cloud=self.settings.name)
            items.extend(page)
            # A link says there is more; so does a full page from a service that omits links.
            more = len(page) >= query["limit"] or bool(body.get("next")) or any(
                link.get("rel") == "next" for link in body.get(f"{key}_links") or ())
            if not page or not more:
                return items
            query["marker"] = page[-1]["id"]
        return items

    def has_service(self, service_type: str) -> bool:
        """Whether the catalog lists ``service_type`` in this region (no request beyond
        the authentication: the catalog comes with the token)."""
        with self.translate("reading the service catalog"):
            access = self.conn.session.auth.get_access(self.conn.session)
        endpoints = access.service_catalog.get_endpoints(
            service_type=service_type, region_name=self.region.region_name or None)
        return bool(endpoints.get(service_type))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def may_have_acted(exc: errors.CloudnormError) -> bool:
    """Whether a failed request may still have been carried out: its reply was lost,
    cut short or garbled, or the cloud failed after accepting it (5xx). A 4xx is a refusal."""
    if isinstance(exc, errors.ServiceUnavailable):
        return exc.status is None
    status = getattr(exc, "status", None)
    return status is None or (isinstance(status, int) and (status >= 500 or status < 400))


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date); None when absent."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is no answer


def http_error(cloud: str, resp: Any, endpoint: str, request_id: str | None
               ) -> errors.CloudnormError:
    """The cloudnorm error of an HTTP error reply to ``endpoint``."""
    status = resp.status_code
    try:
        body = resp.json()
    except ValueError:
        body = {}
    message = error_message(body) or (resp.text or "")[:200] or resp.reason or ""
    text = f"cloud '{cloud}' answered {status} to {endpoint}: {message}".rstrip(": ")
    if status == 401:
        return errors.AuthError(text + "; check the credentials in clouds.yaml", cloud=cloud)
    if status == 404:
        return errors.NotFound(text, cloud=cloud)
    if status in (403, 409, 413) and _QUOTA.search(message):
        named = _QUOTA_NAME.search(message)
        return errors.QuotaExceeded(text + "; free resources or ask for a higher quota",
                                    resource=next(filter(None, named.groups())) if named
                                    else endpoint.split()[-1].strip("/").split("/")[-1],
                                    cloud=cloud)
    return errors.ProviderError(text, status=status, request_id=request_id, endpoint=endpoint,
                                cloud=cloud)


def error_message(body: Any) -> str:
    """The human part of OpenStack's several error body shapes."""
    if not isinstance(body, dict):
        return ""
    for value in body.values():
        if isinstance(value, dict) and "message" in value:
            return str(value["message"])
    if "NeutronError" in body and isinstance(body["NeutronError"], dict):
        return str(body["NeutronError"].get("message", ""))
    if "message" in body:
        return str(body["message"])
    if "error" in body and isinstance(body["error"], dict):
        return str(body["error"].get("message", ""))
    return ""
