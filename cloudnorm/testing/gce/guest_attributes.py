"""Guest attributes: what the guest writes to its metadata server
(``instance/guest-attributes/<namespace>/<key>``), stored where the instance's metadata
(else the project's) says ``enable-guest-attributes=TRUE``, and read back with
``instances.getGuestAttributes``."""

from __future__ import annotations

import re
from typing import Any

from cloudnorm.testing.gce.common import ApiError, invalid
from cloudnorm.testing.gce.instances import InstancesMixin

_GUEST_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _guest_attribute_not_found(path: str) -> ApiError:
    # The wording gcloud's compute ssh matches to tell "nothing published" from a failure.
    return ApiError(404, "notFound",
                    f"The resource '{path}' of type 'Guest Attribute' was not found.")


class GuestAttributesMixin(InstancesMixin):
    """Guest attributes of the instances of a :class:`.state.ComputeState`."""

    def guest_attributes_enabled(self, project: str, instance: dict[str, Any]) -> bool:
        """``enable-guest-attributes`` of the instance's metadata, else of the project's
        (gcloud's compute ssh reads them in that order); off when neither says TRUE."""
        def setting(items: dict[str, Any]) -> str | None:
            value = items.get("enable-guest-attributes")
            return None if value is None else str(value).strip().lower()
        own = setting({i.get("key"): i.get("value") for i in
                       instance.get("metadata", {}).get("items") or []})
        if own is None:
            own = setting(self.project(project)["metadata"])
        return own == "true"

    def put_guest_attribute(self, project: str, zone: str, name: str, namespace: str,
                            key: str, value: str) -> None:
        """What the instance's metadata server does with a PUT to
        ``instance/guest-attributes/<namespace>/<key>`` from inside the instance."""
        instance = self.instance(project, zone, name)
        if not _GUEST_ATTRIBUTE_NAME.fullmatch(namespace) or \
                not _GUEST_ATTRIBUTE_NAME.fullmatch(key):
            raise invalid("guest-attributes", f"{namespace}/{key}",
                          "Use only letters, numerals, underscores and hyphens.")
        if not self.guest_attributes_enabled(project, instance):
            # The metadata server refuses the guest's write (the guest agents log "403
            # Forbidden"): nothing is stored.
            raise ApiError(403, "forbidden", "Guest attributes are disabled for this instance.")
        self.guest_attributes.setdefault(instance["selfLink"], {}).setdefault(
            namespace, {})[key] = value

    def get_guest_attributes(self, project: str, zone: str, name: str, query_path: str,
                             variable_key: str) -> dict[str, Any]:
        """``instances.getGuestAttributes``: one ``variableKey`` (``ns/key``), or every
        entry under ``queryPath`` (``''``, ``ns/`` or ``ns/key``)."""
        instance = self.instance(project, zone, name)
        if not self.guest_attributes_enabled(project, instance):
            raise ApiError(403, "forbidden", "Guest attributes are disabled for this instance.")
        stored = self.guest_attributes.get(instance["selfLink"], {})
        link = f"{instance['selfLink']}/guestAttributes/"
        if variable_key:
            namespace, _, key = variable_key.partition("/")
            if key in stored.get(namespace, {}):
                return {"kind": "compute#guestAttributes", "variableKey": variable_key,
                        "variableValue": stored[namespace][key],
                        "selfLink": link + variable_key}
            raise _guest_attribute_not_found(variable_key)
        namespace, _, key = query_path.partition("/")
        items = [{"namespace": ns, "key": k, "value": v}
                 for ns in sorted(stored) for k, v in sorted(stored[ns].items())
                 if ns == namespace or not namespace
                 if k == key or not key]
        if not items:
            raise _guest_attribute_not_found(query_path)
        return {"kind": "compute#guestAttributes", "queryPath": query_path,
                "queryValue": {"items": items}, "selfLink": link + query_path}
