"""The one error hierarchy of cloudnorm.

Every error says what went wrong *and what to do about it*. Errors raised from
inside a provider SDK never escape as such: drivers translate them into one of
these classes, keeping the provider's status code and request id when there is
one.
"""

from __future__ import annotations

from typing import Any


class CloudnormError(Exception):
    """Base class of every error cloudnorm raises.

    ``cloud`` names the cloud (as in ``clouds.yaml``) the error concerns, when known.
    """

    def __init__(self, message: str, *, cloud: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cloud = cloud

    def __str__(self) -> str:
        if self.cloud and f"'{self.cloud}'" not in self.message:
            return f"cloud '{self.cloud}': {self.message}"
        return self.message


class ConfigError(CloudnormError):
    """The configuration (``clouds.yaml``, environment, arguments) is unusable."""


class AuthError(CloudnormError):
    """The cloud refused the credentials, or the identity endpoint cannot be used."""


class NotFound(CloudnormError):
    """A named resource (server, image, flavor, network, key) does not exist."""


class Ambiguous(CloudnormError):
    """More than one resource matches and cloudnorm will not guess.

    ``candidates`` lists the names or ids that matched.
    """

    def __init__(
        self, message: str, *, candidates: list[str] | None = None, cloud: str | None = None
    ) -> None:
        super().__init__(message, cloud=cloud)
        self.candidates = list(candidates or [])


class InvalidRequest(CloudnormError, ValueError):
    """What was asked cannot be done as asked (checked before anything is created);
    ``field`` names the argument to change."""

    def __init__(self, message: str, *, field: str = "", cloud: str | None = None) -> None:
        super().__init__(message, cloud=cloud)
        self.field = field


class QuotaExceeded(CloudnormError):
    """A quota or capacity limit was hit; ``resource`` names what ran out."""

    def __init__(self, message: str, *, resource: str = "", cloud: str | None = None) -> None:
        super().__init__(message, cloud=cloud)
        self.resource = resource


class Timeout(CloudnormError):
    """A bounded wait ran out before the cloud reached the wanted state."""


class ProviderError(CloudnormError):
    """The provider's API answered with an error cloudnorm cannot turn into a better one.

    ``status`` is the HTTP status (or the provider's error code) and ``request_id``
    the provider's request id, to quote to the provider's support.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | str | None = None,
        request_id: str | None = None,
        endpoint: str | None = None,
        cloud: str | None = None,
    ) -> None:
        super().__init__(message, cloud=cloud)
        self.status = status
        self.request_id = request_id
        self.endpoint = endpoint

    def __str__(self) -> str:
        text = super().__str__()
        extra = []
        if self.status is not None:
            extra.append(f"status {self.status}")
        if self.endpoint:
            extra.append(f"endpoint {self.endpoint}")
        if self.request_id:
            extra.append(f"request id {self.request_id}")
        return f"{text} ({', '.join(extra)})" if extra else text


class ServiceUnavailable(ProviderError):
    """The cloud has no such service in its catalog, or its endpoint does not answer."""


class NotReachable(CloudnormError):
    """A server exists but cannot be reached over SSH on any address."""


class HostKeyMismatch(NotReachable):
    """The server presented a host key its console did not announce: possibly not
    the server cloudnorm created. Nothing was run on it."""


def describe(value: Any) -> str:
    """Short printable form of a value for error messages (never a secret)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
