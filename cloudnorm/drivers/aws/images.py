"""Finding the images of the profile's publishers in a region: public parameters (SSM)
first, owner and name patterns where a parameter is missing or unreadable."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from typing import Any

from cloudnorm import errors
from cloudnorm.drivers.aws.normalize import normalize_image
from cloudnorm.drivers.aws.transport import Transport
from cloudnorm.models import Image

LOG = logging.getLogger(__name__)


def find_images(transport: Transport, series: Sequence[dict[str, Any]], cloud: str
                ) -> list[Image]:
    """The profile's publishers' series, and the account's own images.

    Each ``images:`` entry of the profile (``series``) is resolved through its public
    parameter (the publisher's "current" image) when the region has it, else by owner and
    name pattern; all pattern lookups share one DescribeImages call.
    """
    entries = list(series)
    found: dict[str, Image] = {}
    by_parameter = {e["ssm_parameter"]: e for e in entries if e.get("ssm_parameter")}
    resolved = _parameters(transport, sorted(by_parameter), cloud)
    if resolved:
        records = {r["ImageId"]: r for r in transport.pages(
            "ec2", "describe_images", "Images",
            Filters=[{"Name": "image-id", "Values": sorted(set(resolved.values()))}])}
        for parameter, image_id in sorted(resolved.items()):
            record = records.get(image_id)
            if record is None:
                LOG.info("%s: public parameter %s names %s, which DescribeImages does not "
                         "return; using the name pattern", cloud, parameter, image_id)
                continue
            entry = by_parameter[parameter]
            found[image_id] = normalize_image(record, entry, f"public parameter {parameter}")
            entries.remove(entry)
    if entries:
        matching = transport.pages(
            "ec2", "describe_images", "Images", Owners=sorted({e["owner"] for e in entries}),
            Filters=[{"Name": "name", "Values": sorted({e["name"] for e in entries})},
                     {"Name": "state", "Values": ["available"]}])
        for record in matching:
            # One call serves every series: keep only each owner's own pattern.
            matches = [e for e in entries if record.get("OwnerId") == e["owner"]
                       and fnmatch.fnmatchcase(record.get("Name") or "", e["name"])]
            if matches:
                entry = matches[0]
                found[record["ImageId"]] = normalize_image(
                    record, entry, f"owner {entry['owner']}, name {entry['name']}")
    for record in transport.pages("ec2", "describe_images", "Images", Owners=["self"]):
        found.setdefault(record["ImageId"], normalize_image(record))
    return list(found.values())


def _parameters(transport: Transport, names: list[str], cloud: str) -> dict[str, str]:
    """Public parameter name -> image id, for the parameters this region has."""
    values: dict[str, str] = {}
    for start in range(0, len(names), 10):  # GetParameters takes at most 10 names
        try:
            reply = transport.call("ssm", "get_parameters", Names=names[start:start + 10])
        except errors.ProviderError as exc:
            # Lacking ssm:GetParameters is common in locked-down accounts, and
            # EC2-compatible endpoints may have no SSM: the name patterns find the
            # same series.
            if isinstance(exc, errors.ServiceUnavailable) or exc.status in (
                    "AccessDeniedException", "AccessDenied"):
                LOG.info("%s: public parameters unreadable (%s); using name patterns",
                         cloud, exc.status or exc.message)
                return values
            raise
        values.update({p["Name"]: p["Value"] for p in reply.get("Parameters") or ()
                       if str(p.get("Value", "")).startswith("ami-")})
    return values
