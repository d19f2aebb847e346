"""How the GCE driver talks to Compute Engine: google-cloud-compute (``compute_v1``) clients
over REST, their credentials, rate limit, retries, and errors in cloudnorm's terms.

- *Credentials*: every client is built with explicit credentials: the ones the entry
  names, or those google-auth's Application Default Credentials resolve to, never the
  library's implicit lookup behind cloudnorm's back.
- *Rate limit*: every HTTP request of every client (retries and further pages included)
  waits for its turn in the project's budget (:mod:`cloudnorm.ratelimit`): ``get``,
  ``list``, ``aggregated_list`` and operation ``wait`` calls are reads, the rest writes.
  Throttled answers (429, or 403 ``rateLimitExceeded``) are retried with backoff, as are
  5xx answers and lost connections: every write carries a ``requestId``, which GCE uses
  to carry a repeated request out once.
- *Operations*: writes return Operations; they are waited for with this transport's own
  ``ZoneOperationsClient``/``GlobalOperationsClient`` (same endpoint, same credentials).
  ``ExtendedOperation.result()`` is never used: it polls through a client of its own
  built for Google's endpoint.

The SDK is imported on first use, never at import time.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from cloudnorm import __version__, errors, ratelimit
from cloudnorm.drivers.gce.config import PROVIDER
from cloudnorm.drivers.gce.normalize import last
from cloudnorm.settings import CloudSettings

_SCOPES = ("https://www.googleapis.com/auth/compute",)
#: The compute_v1 client of each kind of resource the driver calls.
CLIENTS = {"projects": "ProjectsClient", "images": "ImagesClient",
           "machine_types": "MachineTypesClient", "networks": "NetworksClient",
           "subnetworks": "SubnetworksClient", "firewalls": "FirewallsClient",
           "instances": "InstancesClient", "disks": "DisksClient",
           "zone_operations": "ZoneOperationsClient",
           "global_operations": "GlobalOperationsClient"}
_TIMEOUT = 60.0
# The operations' wait call answers when the operation is done or after about two minutes.
_WAIT_TIMEOUT = 150.0
#: Seconds an operation is waited for before the caller goes on without its end.
OPERATION_LIMIT = 600.0
#: Tries of a call whose connection fails (refused, reset, cut short) before giving up.
CONNECTION_ATTEMPTS = 4
_RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"}
# compute_v1 methods that only read (each REST transport calls its interceptor's
# ``pre_<method>`` per HTTP attempt); an operation's wait is a read too.
_READ_CALLS = ("get", "list", "aggregated_list", "wait")
_CAPACITY_CODES = {"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                   "RESOURCE_POOL_EXHAUSTED", "STOCKOUT"}


def as_dict(message: Any) -> dict[str, Any]:
    """A compute_v1 message as the REST API's JSON (camelCase keys, enums as names)."""
    return type(message).to_dict(message, preserving_proto_field_name=False,  # type: ignore
                                 use_integers_for_enums=False)


# -- rate limit -------------------------------------------------------------------------------
def is_read_call(method: str) -> bool:
    """Whether the compute_v1 method ``method`` (``get_serial_port_output``, ``insert``...)
    only reads, for the rate limit."""
    return any(method == r or method.startswith(f"{r}_") for r in _READ_CALLS)


class Throttle:
    """The interceptor of a compute_v1 REST transport: before each HTTP attempt (the
    transport calls ``pre_<method>`` for every one, so retries and further pages of a list
    count too), wait for a turn in ``limiter``. Everything else is the library's own
    interceptor's (a no-op)."""

    def __init__(self, limiter: ratelimit.Limiter, base: Any = None) -> None:
        self._limiter = limiter
        self._base = base

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._base is not None:
            inner = getattr(self._base, name)
        elif name.startswith("pre_"):
            def inner(request: Any, metadata: Any) -> tuple[Any, Any]:
                return request, metadata
        elif name.endswith("_with_metadata"):
            def inner(response: Any, metadata: Any) -> tuple[Any, Any]:
                return response, metadata
        elif name.startswith("post_"):
            def inner(response: Any) -> Any:
                return response
        else:
            raise AttributeError(name)
        if not name.startswith("pre_"):
            return inner
        write = not is_read_call(name.removeprefix("pre_"))

        def pre(request: Any, metadata: Any) -> Any:
            self._limiter.acquire(write)
            return inner(request, metadata)
        return pre


def throttled_transport(client_class: Any, limiter: ratelimit.Limiter) -> Any:
    """A factory of ``client_class``'s REST transport whose requests spend ``limiter``."""
    transport = client_class.get_transport_class("rest")
    module = importlib.import_module(transport.__module__)
    base = getattr(module, transport.__name__.replace("Transport", "Interceptor"), None)
    return functools.partial(transport, interceptor=Throttle(
        limiter, base() if base is not None else None))


# -- the transport ------------------------------------------------------------------------------
def connection_options(settings: CloudSettings) -> tuple[str | None, bool]:
    """(endpoint_url or None, send no credentials?) of a cloud's ``cloudnorm:`` section,
    checked: anonymous access is only for a local endpoint, and excludes a key file."""
    options = settings.options
    source = settings.source or "clouds.yaml"
    endpoint = str(options.get("endpoint_url") or "") or None
    mode = options.get("credentials")
    if mode is None:
        return endpoint, False
    if str(mode).lower() != "anonymous":
        raise errors.ConfigError(
            f"cloud '{settings.name}' ({source}): cloudnorm: credentials: can only be "
            f"'anonymous' (got '{mode}'); name a credentials file with "
            "credentials_file:, or leave both out for Application Default Credentials",
            cloud=settings.name)
    if not endpoint:
        raise errors.ConfigError(
            f"cloud '{settings.name}' ({source}): credentials: anonymous sends no "
            "credentials, which only a local endpoint accepts: set endpoint_url too",
            cloud=settings.name)
    if options.get("credentials_file"):
        raise errors.ConfigError(
            f"cloud '{settings.name}' ({source}) names both credentials: anonymous "
            "and a credentials_file: keep one", cloud=settings.name)
    return endpoint, True


class Transport:
    """The compute_v1 clients of one project, made on first use and shared by threads."""

    def __init__(self, settings: CloudSettings, endpoint: str | None, anonymous: bool) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.anonymous = anonymous
        options = settings.options
        self._project: str | None = str(options.get("project") or "") or None
        self._lock = threading.Lock()
        self._credentials: Any = None
        self._clients: dict[str, Any] = {}
        #: The first backoff of a retried request, in seconds.
        self.retry_initial = 1.0
        who = ("anonymous" if anonymous else options.get("credentials_file")
               or "application default credentials")
        #: The project as the configuration names it, not its zone (cache namespace).
        self.identity = "|".join(str(x) for x in ("gce", endpoint or "", who,
                                                  options.get("project") or ""))
        # GCE throttles per project: every zone and network of it draws on one budget.
        self.limiter = ratelimit.limiter_for(
            "|".join(self.identity.split("|")[:4]),
            ratelimit.for_cloud(settings, PROVIDER.writes_per_second))

    def _resolve_credentials(self) -> Any:
        """The credentials every client gets, and the project they belong to."""
        if self._credentials is not None:
            return self._credentials
        import google.auth
        from google.auth import exceptions as gauth

        name, source = self.settings.name, self.settings.source or "clouds.yaml"
        path = self.settings.options.get("credentials_file")
        project = None
        if self.anonymous:
            from google.auth.credentials import AnonymousCredentials

            credentials: Any = AnonymousCredentials()
        elif path:
            path = os.path.expanduser(str(path))
            if not os.path.exists(path):
                raise errors.ConfigError(
                    f"cloud '{name}' ({source}) names credentials_file {path}, which does not "
                    "exist", cloud=name)
            credentials, project = _credentials_from_file(name, path)
        else:
            try:
                credentials, project = google.auth.default(scopes=list(_SCOPES))
            except gauth.DefaultCredentialsError as exc:
                raise errors.AuthError(
                    f"cloud '{name}' names no credentials_file and Application Default "
                    f"Credentials found none ({exc}); run `gcloud auth application-default "
                    f"login`, or name a service account key with credentials_file: in {source}",
                    cloud=name) from exc
        if self._project is None:
            if not project:
                raise errors.ConfigError(
                    f"cloud '{name}' ({source}) names no project and its credentials belong "
                    "to none: add project: under cloudnorm:", cloud=name)
            self._project = str(project)
        self._credentials = credentials
        return credentials

    @property
    def known_project(self) -> str | None:
        """The project, where it is known without resolving the credentials."""
        return self._project

    @property
    def project(self) -> str:
        if self._project is None:
            with self._lock:
                self._resolve_credentials()
        return str(self._project)

    def client(self, kind: str) -> Any:
        """The compute_v1 client of ``kind`` (a key of :data:`CLIENTS`)."""
        with self._lock:
            if kind in self._clients:
                return self._clients[kind]
            from google.api_core.client_options import ClientOptions
            from google.api_core.gapic_v1.client_info import ClientInfo
            from google.cloud import compute_v1

            credentials = self._resolve_credentials()
            options = ClientOptions(api_endpoint=self.endpoint) if self.endpoint else None
            client_class = getattr(compute_v1, CLIENTS[kind])
            # The one place every request passes: the transport's interceptor waits for
            # the project's rate limit before each HTTP attempt.
            client = client_class(
                transport=throttled_transport(client_class, self.limiter),
                credentials=credentials, client_options=options,
                client_info=ClientInfo(user_agent=f"cloudnorm/{__version__}"))
            self._clients[kind] = client
            return client

    def retry(self) -> Any:
        """The retry policy of every call."""
        import requests
        from google.api_core import exceptions as gexc
        from google.api_core.retry import Retry

        connection_failures = 0

        def transient(exc: Exception) -> bool:
            # Throttling (403 rateLimitExceeded, 429), the server's own passing faults and
            # connections lost on the way; writes are safe to repeat: each carries a
            # requestId GCE deduplicates.
            nonlocal connection_failures
            if isinstance(exc, gexc.TooManyRequests) or (
                    isinstance(exc, gexc.Forbidden) and bool(_reasons(exc) & _RATE_REASONS)):
                self.limiter.throttled()  # the kind of this thread's request
                return True
            if isinstance(exc, (requests.ConnectionError,
                                requests.exceptions.ChunkedEncodingError)):
                # A lost connection passes; an endpoint that refuses every connection (a
                # wrong endpoint_url, a proxy down) does not, and a whole minute of
                # backoff would only hide that. A few attempts, as botocore's standard
                # retry mode makes.
                connection_failures += 1
                if connection_failures >= CONNECTION_ATTEMPTS:
                    # Given up, as when the backoff runs out: say so the same way.
                    raise gexc.RetryError(
                        f"{CONNECTION_ATTEMPTS} connections failed", cause=exc) from exc
                return True
            return isinstance(exc, (gexc.ServiceUnavailable, gexc.InternalServerError,
                                    gexc.BadGateway, gexc.GatewayTimeout))

        return Retry(predicate=transient, initial=self.retry_initial, maximum=16.0,
                     multiplier=2.0, timeout=60.0)

    @contextlib.contextmanager
    def translate(self, what: str) -> Iterator[None]:
        """Turn google-api-core, google-auth and transport exceptions into cloudnorm's."""
        import requests
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as gauth
        from google.protobuf import json_format

        name = self.settings.name
        try:
            yield
        except gexc.RetryError as exc:
            cause = exc.cause
            if isinstance(cause, gexc.GoogleAPICallError):
                raise api_error(name, what, cause, retried=True) from exc
            if isinstance(cause, requests.RequestException):
                raise self._unreachable(what, cause, retried=True) from exc
            raise errors.ProviderError(f"cloud '{name}' failed while {what}: {exc}",
                                       cloud=name) from exc
        except gexc.GoogleAPICallError as exc:
            raise api_error(name, what, exc) from exc
        except gauth.RefreshError as exc:
            raise errors.AuthError(
                f"cloud '{name}': Google refused to issue an access token while {what} "
                f"({exc}); check the credentials (credentials_file, or `gcloud auth "
                "application-default login`)", cloud=name) from exc
        except gauth.TransportError as exc:
            raise errors.ServiceUnavailable(
                f"cannot reach Google's token service for cloud '{name}' while {what}: {exc}",
                cloud=name) from exc
        except requests.RequestException as exc:
            # Refused or lost connections, timeouts, a reply cut short
            # (ChunkedEncodingError): the API was not (fully) reached.
            raise self._unreachable(what, exc) from exc
        except json_format.ParseError as exc:
            raise errors.ProviderError(
                f"cloud '{name}': the Compute Engine API answered something that is not the "
                f"JSON it should be while {what}: {exc}", endpoint=self.endpoint,
                cloud=name) from exc

    def _unreachable(self, what: str, exc: Exception,
                     retried: bool = False) -> errors.CloudnormError:
        name = self.settings.name
        return errors.ServiceUnavailable(
            f"cannot reach the Compute Engine API for cloud '{name}' while {what}"
            f"{' (after retries with backoff)' if retried else ''}: {exc}"
            + (f"; check endpoint_url {self.endpoint}" if self.endpoint else ""),
            cloud=name)

    def call(self, kind: str, method: str, what: str, **params: Any) -> Any:
        """One call of a client's method, retried and translated; ``what`` names it in
        errors ("creating instance web")."""
        client = self.client(kind)
        timeout = _WAIT_TIMEOUT if method == "wait" else _TIMEOUT
        with self.translate(what):
            return getattr(client, method)(request=params, retry=self.retry(), timeout=timeout)

    def list_records(self, kind: str, what: str, **params: Any) -> list[dict[str, Any]]:
        """Every record of a list call (the pager follows nextPageToken)."""
        client = self.client(kind)
        with self.translate(what):
            pager = client.list(request=params, retry=self.retry(), timeout=_TIMEOUT)
            return [as_dict(item) for item in pager]

    def wait(self, operation: Any, what: str) -> Any:
        """Wait (bounded) for an Operation with the operations client of its scope; raise
        its error. Returns the last Operation seen (not done after the bound)."""
        from google.cloud import compute_v1

        done = compute_v1.Operation.Status.DONE
        deadline = time.monotonic() + OPERATION_LIMIT
        current = operation
        for _ in range(100):  # each wait answers within about two minutes
            if current.status == done or time.monotonic() >= deadline:
                break
            if current.zone:
                current = self.call("zone_operations", "wait", what, project=self.project,
                                    zone=last(current.zone), operation=operation.name)
            else:
                current = self.call("global_operations", "wait", what,
                                    project=self.project, operation=operation.name)
        if current.status == done and current.error and current.error.errors:
            raise operation_error(self.settings.name, what, as_dict(current))
        return current

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            with contextlib.suppress(Exception):
                client.transport.close()


def _credentials_from_file(cloud: str, path: str) -> tuple[Any, str | None]:
    """Credentials of a service account key or an authorized user file, each loaded by its
    own type's loader (a file of another type is refused, not trusted blindly)."""
    try:
        with open(path, encoding="utf-8") as stream:
            info = json.load(stream)
    except (OSError, ValueError) as exc:
        raise errors.ConfigError(f"cloud '{cloud}': cannot read credentials_file {path}: "
                                 f"{exc}", cloud=cloud) from exc
    kind = info.get("type") if isinstance(info, dict) else None
    try:
        if kind == "service_account":
            from google.oauth2 import service_account

            return (service_account.Credentials.from_service_account_info(
                info, scopes=list(_SCOPES)), info.get("project_id"))
        if kind == "authorized_user":
            from google.oauth2 import credentials as user_credentials

            return (user_credentials.Credentials.from_authorized_user_info(
                info, scopes=list(_SCOPES)), info.get("quota_project_id"))
    except (ValueError, KeyError) as exc:
        raise errors.ConfigError(f"cloud '{cloud}': {path} is not a usable {kind} file: "
                                 f"{exc}", cloud=cloud) from exc
    raise errors.ConfigError(
        f"cloud '{cloud}': credentials_file {path} is of type '{kind}'; cloudnorm reads "
        "service_account and authorized_user files. For other kinds (workload identity "
        "federation...), leave credentials_file out and point GOOGLE_APPLICATION_CREDENTIALS "
        "at the file", cloud=cloud)


# -- errors ---------------------------------------------------------------------------------
def _reasons(exc: Any) -> set[str]:
    return {str(e.get("reason")) for e in getattr(exc, "errors", None) or ()
            if isinstance(e, dict) and e.get("reason")}


def _google_message(exc: Any) -> str:
    for entry in getattr(exc, "errors", None) or ():
        if isinstance(entry, dict) and entry.get("message"):
            return str(entry["message"])
    message = str(getattr(exc, "message", "") or exc)
    # google-api-core prefixes "METHOD URL: "; the URL says nothing the caller needs.
    return re.sub(r"^[A-Z]+ \S+: ", "", message)


def _quota_resource(message: str) -> str:
    match = re.search(r"Quota '([^']+)'", message)
    return match.group(1) if match else "quota"


def api_error(cloud: str, what: str, exc: Any, retried: bool = False) -> errors.CloudnormError:
    """cloudnorm's error for a google-api-core error of a call."""
    code = int(getattr(exc, "code", 0) or 0)
    reasons = _reasons(exc)
    message = _google_message(exc)
    text = f"cloud '{cloud}': GCE refused {what.removeprefix('calling ')} ({code}"
    text += f" {', '.join(sorted(reasons))}: {message})" if reasons else f": {message})"
    if code == 401:
        return errors.AuthError(f"{text}; check the credentials (credentials_file, or `gcloud "
                                "auth application-default login`)", cloud=cloud)
    if reasons & _RATE_REASONS or code == 429:
        return errors.QuotaExceeded(
            f"{text}{' after retries with backoff' if retried else ''}: the project's API "
            "request rate is exhausted; wait and retry", resource="API request rate",
            cloud=cloud)
    if "quotaExceeded" in reasons or re.search(r"Quota '[^']+' exceeded", message):
        return errors.QuotaExceeded(f"{text}; free resources or ask for a higher quota (IAM & "
                                    "Admin > Quotas)", resource=_quota_resource(message),
                                    cloud=cloud)
    if code == 403 and "accessNotConfigured" in reasons:
        return errors.ConfigError(f"{text}; enable the Compute Engine API for the project",
                                  cloud=cloud)
    if code == 403:
        return errors.AuthError(f"{text}; the credentials lack a permission this needs",
                                cloud=cloud)
    if code == 404:
        return errors.NotFound(text, cloud=cloud)
    if code == 503:
        return errors.ServiceUnavailable(text, status=code, endpoint=what, cloud=cloud)
    return errors.ProviderError(text, status=code, endpoint=what, cloud=cloud)


def operation_error(cloud: str, what: str, operation: dict[str, Any]) -> errors.CloudnormError:
    """cloudnorm's error for an Operation (REST JSON) that ended in an error."""
    found = (operation.get("error") or {}).get("errors") or [{}]
    codes = [str(e.get("code") or "") for e in found]
    message = "; ".join(str(e.get("message") or e.get("code") or "") for e in found)
    text = (f"cloud '{cloud}': GCE failed {what} (operation {operation.get('name')}: "
            f"{', '.join(c for c in codes if c)}: {message})")
    if any(c in _CAPACITY_CODES for c in codes):
        return errors.QuotaExceeded(
            f"{text}: the zone has no capacity for this right now; ask for another machine "
            "type (flavor=...), another zone (cloudnorm: zone:), or retry later",
            resource="capacity", cloud=cloud)
    if "QUOTA_EXCEEDED" in codes or re.search(r"Quota '[^']+' exceeded", message):
        return errors.QuotaExceeded(f"{text}; free resources or ask for a higher quota",
                                    resource=_quota_resource(message), cloud=cloud)
    if "RESOURCE_NOT_FOUND" in codes:
        return errors.NotFound(text, cloud=cloud)
    return errors.ProviderError(text, status=operation.get("httpErrorStatusCode") or codes[0],
                                endpoint=what, cloud=cloud)
