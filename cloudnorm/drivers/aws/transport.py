"""Talking to EC2 and SSM through boto3, and turning botocore's errors into cloudnorm's.

botocore does the transport work: the credential chain (explicit keys, named profiles, the
environment, IAM Identity Center/SSO, instance roles), signing, retries in its ``standard``
mode (throttling such as ``RequestLimitExceeded`` and transient faults, with backoff and a
retry quota; ``max_attempts`` comes from ``AWS_MAX_ATTEMPTS`` or ``~/.aws/config``) and
pagination. This module adds the account's rate limit to every HTTP attempt and says
what to fix when a call fails.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import boto3
from botocore import exceptions as bce
from botocore.config import Config
from botocore.parsers import ResponseParserError

from cloudnorm import __version__, errors, ratelimit
from cloudnorm.drivers.aws.config import PROVIDER
from cloudnorm.settings import CloudSettings

# EC2 and STS operations that change nothing: they draw on the (larger) read budget.
_READ_PREFIXES = ("Describe", "Get", "List")
_AUTH_CODES = {"AuthFailure", "UnrecognizedClientException", "InvalidClientTokenId",
               "SignatureDoesNotMatch", "IncompleteSignature", "ExpiredToken",
               "ExpiredTokenException", "InvalidToken"}
_THROTTLE_CODES = {"RequestLimitExceeded", "Throttling", "ThrottlingException",
                   "TooManyRequestsException"}
_CAPACITY_CODES = {"InsufficientInstanceCapacity", "InsufficientHostCapacity",
                   "InsufficientReservedInstanceCapacity", "InsufficientCapacity",
                   "InsufficientAddressCapacity"}
_QUOTA_CODES = {"InstanceLimitExceeded": "instances", "VcpuLimitExceeded": "vCPUs",
                "AddressLimitExceeded": "Elastic IPs",
                "SecurityGroupLimitExceeded": "security groups",
                "RulesPerSecurityGroupLimitExceeded": "security group rules",
                "VolumeLimitExceeded": "EBS volume storage",
                "NetworkInterfaceLimitExceeded": "network interfaces",
                "InsufficientFreeAddressesInSubnet": "free addresses in the subnet",
                "ResourceLimitExceeded": "resources", "MaxIOPSLimitExceeded": "EBS IOPS"}


class Transport:
    """One boto3 session and its clients for one account and region, behind the
    account's rate limiter (shared by every driver of the same ``identity``)."""

    def __init__(self, settings: CloudSettings, identity: str) -> None:
        self.settings = settings
        self.endpoint_url: str | None = settings.options.get("endpoint_url") or None
        self._lock = threading.Lock()
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self._region: str | None = settings.region
        self.limiter = ratelimit.limiter_for(
            identity, ratelimit.for_cloud(settings, PROVIDER.writes_per_second))

    def client(self, service: str) -> Any:
        """The boto3 client of ``service`` (made on first use)."""
        with self._lock:
            if service in self._clients:
                return self._clients[service]
            options = self.settings.options
            with self._translate(f"reading the AWS configuration for {service}"):
                if self._session is None:
                    kwargs: dict[str, Any] = {}
                    if options.get("aws_profile"):
                        kwargs["profile_name"] = str(options["aws_profile"])
                    for key in ("aws_access_key_id", "aws_secret_access_key",
                                "aws_session_token"):
                        if options.get(key):
                            kwargs[key] = str(options[key])
                    if self._region:
                        kwargs["region_name"] = self._region
                    self._session = boto3.session.Session(**kwargs)
                    self._region = self._session.region_name
                if not self._region:
                    raise errors.ConfigError(
                        f"cloud '{self.settings.name}' names no region: add region: under "
                        f"cloudnorm: in {self.settings.source or 'clouds.yaml'}, or set "
                        "AWS_REGION", cloud=self.settings.name)
                config = Config(retries={"mode": "standard"}, connect_timeout=10,
                                read_timeout=60, user_agent_extra=f"cloudnorm/{__version__}")
                client = self._session.client(service, endpoint_url=self.endpoint_url,
                                              config=config)
                # Per HTTP attempt, so that botocore's own retries spend the budget too.
                client.meta.events.register("before-send", self._throttle)
                client.meta.events.register("needs-retry", self._throttled)
            self._clients[service] = client
            return client

    def _throttle(self, event_name: str = "", **_: Any) -> None:
        """botocore hook: wait for this account's turn. Describe/Get/List calls are reads."""
        operation = event_name.rsplit(".", 1)[-1]
        self.limiter.acquire(not operation.startswith(_READ_PREFIXES))

    def _throttled(self, response: Any = None, **_: Any) -> None:
        """botocore hook, per attempt: tell the account's limiter when AWS throttled it."""
        if response and (response[1].get("Error") or {}).get("Code") in _THROTTLE_CODES:
            self.limiter.throttled()  # the kind of this thread's request

    @property
    def region(self) -> str:
        """The region: the configured one, else the AWS configuration's."""
        if not self._region:
            self.client("ec2")
        return str(self._region)

    @contextlib.contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Turn botocore's exceptions into cloudnorm errors naming what to fix."""
        name = self.settings.name
        source = self.settings.source or "clouds.yaml"
        try:
            yield
        except bce.ClientError as exc:
            raise _client_error(name, what, exc) from exc
        except (bce.ProfileNotFound, bce.InvalidConfigError, bce.NoRegionError) as exc:
            raise errors.ConfigError(f"cloud '{name}': {exc}; check aws_profile and region "
                                     f"under cloudnorm: in {source}", cloud=name) from exc
        except (bce.NoCredentialsError, bce.PartialCredentialsError) as exc:
            raise errors.AuthError(
                f"cloud '{name}' has no usable AWS credentials while {what} ({exc}): name a "
                f"profile with aws_profile: in {source}, or set AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", cloud=name) from exc
        except (bce.SSOError, bce.CredentialRetrievalError, bce.TokenRetrievalError) as exc:
            raise errors.AuthError(
                f"cloud '{name}': AWS credentials could not be obtained while {what} ({exc});"
                " for an SSO profile run `aws sso login --profile NAME`", cloud=name) from exc
        except (bce.ConnectionError, bce.HTTPClientError) as exc:
            raise errors.ServiceUnavailable(
                f"cannot reach AWS for cloud '{name}' while {what}: {exc}; check the region"
                + (f" and endpoint_url {self.endpoint_url}" if self.endpoint_url else "")
                + " and the network", cloud=name) from exc
        except bce.BotoCoreError as exc:
            raise errors.ProviderError(f"cloud '{name}' failed while {what}: {exc}",
                                       cloud=name) from exc
        except ResponseParserError as exc:
            # Not a BotoCoreError: a reply cut short or garbled on the way (the parser
            # quotes the whole body; the start of it is enough).
            detail = str(exc)
            raise errors.ProviderError(
                f"cloud '{name}': AWS answered something that is not a reply of the API "
                f"while {what} (cut short or garbled on the way): "
                f"{detail[:300]}{'...' if len(detail) > 300 else ''}",
                endpoint=what.removeprefix("calling "), cloud=name) from exc

    def call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """One API call (``operation`` in boto3's snake_case), its errors translated."""
        client = self.client(service)
        with self._translate(f"calling {service} {_op_name(operation)}"):
            return getattr(client, operation)(**params)  # type: ignore[no-any-return]

    def pages(self, service: str, operation: str, key: str,
              **params: Any) -> list[dict[str, Any]]:
        """Every record of a paginated call (botocore's paginator follows NextToken)."""
        client = self.client(service)
        items: list[dict[str, Any]] = []
        with self._translate(f"calling {service} {_op_name(operation)}"):
            for page in client.get_paginator(operation).paginate(**params):
                items.extend(page.get(key) or ())
        return items

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            with contextlib.suppress(Exception):
                client.close()


def _op_name(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))


def _client_error(cloud: str, what: str, exc: Any) -> errors.CloudnormError:
    """The cloudnorm error of an error reply of AWS (a botocore ``ClientError``)."""
    error = exc.response.get("Error") or {}
    meta = exc.response.get("ResponseMetadata") or {}
    code = str(error.get("Code") or "Unknown")
    message = str(error.get("Message") or "").strip()
    request_id = meta.get("RequestId") or None
    endpoint = what.removeprefix("calling ")
    text = f"cloud '{cloud}': AWS refused {endpoint} ({code}: {message})"
    if code in _AUTH_CODES:
        return errors.AuthError(
            f"{text}; check the credentials (aws_profile, AWS_PROFILE or the access keys), "
            "and that the region is enabled for the account; an expired SSO session needs "
            "`aws sso login`", cloud=cloud)
    if code in _THROTTLE_CODES:
        tries = int(meta.get("RetryAttempts") or 0) + 1
        return errors.QuotaExceeded(
            f"{text} after {tries} attempt(s) with backoff: the account's API request rate "
            "is exhausted; wait and retry, or allow more attempts (AWS_MAX_ATTEMPTS or "
            "max_attempts in ~/.aws/config)", resource="API request rate", cloud=cloud)
    if code in _CAPACITY_CODES:
        return errors.QuotaExceeded(
            f"{text}: AWS has no capacity for this request there right now; ask for another "
            "instance type (flavor=...), another zone (cloudnorm: zone: or network=...), or "
            "retry later", resource="capacity", cloud=cloud)
    if code in _QUOTA_CODES:
        return errors.QuotaExceeded(
            f"{text}; free some or ask AWS for a higher quota (Service Quotas console)",
            resource=_QUOTA_CODES[code], cloud=cloud)
    if code.endswith("NotFound") or code in ("InvalidInstanceID.Malformed",):
        return errors.NotFound(text, cloud=cloud)
    return errors.ProviderError(text, status=code, request_id=request_id, endpoint=endpoint,
                                cloud=cloud)
