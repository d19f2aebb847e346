"""What a GCE project is to cloudnorm before its driver loads (no SDK import)."""

from __future__ import annotations

from cloudnorm.drivers.registry import ProviderSpec

PROVIDER = ProviderSpec(
    name="gce",
    normalize="cloudnorm.drivers.gce.normalize",
    driver="cloudnorm.drivers.gce.driver:GceDriver",
    package="google-cloud-compute", extra="gce",
    needs=("google.cloud.compute_v1", "google.api_core", "google.auth", "google.protobuf"),
    options={
        "project": "the project servers go to",
        "zone": "the zone servers go to",
        "credentials_file": "a service account key file",
        "credentials": "anonymous sends no credentials (only with endpoint_url)",
        "endpoint_url": "a compute endpoint other than Google's own (a local one)",
        "network": "the network servers go to",
        "subnet": "the subnet of a custom-mode network servers go to",
    },
    # Nodepool's default for GCE: two writes a second.
    writes_per_second=2.0,
)
