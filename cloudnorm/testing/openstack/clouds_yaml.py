"""The clouds.yaml that points openstacksdk (and cloudnorm) at the sandbox's projects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def cloud_name(profile: str) -> str:
    return f"sandbox-{profile}"


def entries(auth_url: str, profiles: list[dict[str, Any]],
            states: dict[str, dict[str, Any]]) -> dict[str, Any]:
    clouds = {}
    for profile in profiles:
        state = states[profile["name"]]
        entry: dict[str, Any] = {
            "auth": {
                "auth_url": auth_url,
                "username": state["username"],
                "password": state["password"],
                "project_name": state["project_name"],
                "user_domain_id": "default",
                "project_domain_id": "default",
            },
            "region_name": state["region"],
            "identity_api_version": 3,
            "interface": "public",
        }
        entry.update(profile.get("clouds_yaml", {}))
        # A profile may tell cloudnorm more about its cloud (e.g. which cloudnorm profile
        # fits it); which sandbox profile made the entry is always the sandbox's to say.
        entry["cloudnorm"] = {"provider": "openstack", **entry.get("cloudnorm", {}),
                              "sandbox_profile": profile["name"]}
        clouds[cloud_name(profile["name"])] = entry
    return {"clouds": clouds}


def write(path: Path, document: dict[str, Any]) -> Path:
    import yaml

    # It holds passwords: readable by its owner only, from the first byte on.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(document, handle, sort_keys=False, allow_unicode=True)
    return path
