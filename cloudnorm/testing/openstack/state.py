"""What a running sandbox offers, kept in ``<workdir>/sandbox.json`` next to its clouds.yaml.

Another process (a test session, a user's script) can load it to use a sandbox it did not
start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cloudnorm.testing.openstack import connections
from cloudnorm.testing.request_log import read_requests

STATE_FILE = "sandbox.json"


class SandboxState:
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @classmethod
    def load(cls, path: Path) -> SandboxState:
        with open(path, encoding="utf-8") as handle:
            return cls(json.load(handle))

    @classmethod
    def from_clouds_yaml(cls, clouds_yaml: Path) -> SandboxState:
        state_path = Path(clouds_yaml).resolve().parent / STATE_FILE
        if not state_path.is_file():
            raise FileNotFoundError(
                f"{clouds_yaml} was not written by a cloudnorm sandbox: no {STATE_FILE} beside it")
        return cls.load(state_path)

    def save(self, path: Path) -> Path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self._data, handle, indent=2, sort_keys=True)
        return path

    @property
    def workdir(self) -> Path:
        return Path(self._data["workdir"])

    @property
    def clouds_yaml(self) -> Path:
        return Path(self._data["clouds_yaml"])

    @property
    def request_log(self) -> Path:
        return Path(self._data["request_log"])

    @property
    def console_dir(self) -> Path:
        """Where ``<instance uuid>.log`` files become that server's console output."""
        return Path(self._data["console_dir"])

    @property
    def admin_auth(self) -> dict[str, str]:
        return dict(self._data["admin_auth"])

    @property
    def region(self) -> str:
        return self._data["region"]

    @property
    def endpoints(self) -> dict[str, str]:
        return dict(self._data["endpoints"])

    @property
    def database(self) -> dict[str, Any]:
        """What holds the services' data: ``engine`` "postgresql" (with ``socket_dir``,
        ``databases``, ``psql``...) or "sqlite", the fallback, with its ``warning``."""
        return dict(self._data.get("database") or {})

    @property
    def cloud_names(self) -> list[str]:
        return [profile["cloud"] for profile in self._data["profiles"].values()]

    @property
    def profile_names(self) -> list[str]:
        return list(self._data["profiles"])

    def profile(self, name: str) -> dict[str, Any]:
        """Ids of the profile's project, user, networks, subnets, routers, flavors, images
        and floating IPs (by address), ``metadata_service`` (whether the cloud has one),
        ``block_storage`` (whether the project's catalog lists Cinder),
        and ``expect``: its expectations with ids resolved."""
        return self._data["profiles"][name]

    def project_profiles(self) -> dict[str, str]:
        """Profile name by project id: what shapes a server of that project."""
        return {state["project_id"]: name for name, state in self._data["profiles"].items()}

    def requests(self, since: float | None = None, service: str | None = None,
                 project: str | None = None) -> list[dict[str, Any]]:
        return read_requests(self.request_log, since=since, service=service, project=project)

    def connect(self, profile: str) -> Any:
        """An openstacksdk connection as the profile's user, from the sandbox's clouds.yaml."""
        return connections.as_cloud(self.clouds_yaml, self.profile(profile)["cloud"])

    def connect_admin(self) -> Any:
        return connections.as_admin(self.admin_auth, self.region)
