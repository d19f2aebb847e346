"""openstacksdk connections to a sandbox, never influenced by the caller's own
``OS_*`` variables or clouds.yaml files."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def as_admin(auth: dict[str, str], region: str) -> Any:
    import openstack

    return openstack.connect(
        load_yaml_config=False, load_envvars=False, auth_type="password", auth=dict(auth),
        region_name=region, identity_api_version="3", app_name="cloudnorm-sandbox-admin",
    )


def as_cloud(clouds_yaml: Path, cloud: str) -> Any:
    """A connection as a profile's user, configured only by the sandbox's clouds.yaml."""
    import openstack.config
    import openstack.connection

    config = openstack.config.OpenStackConfig(config_files=[str(clouds_yaml)],
                                              load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))
