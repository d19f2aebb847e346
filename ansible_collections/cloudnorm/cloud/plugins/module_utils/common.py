# -*- coding: utf-8 -*-
# Copyright: cloudnorm developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""What the cloudnorm modules and the inventory plugin share: connecting, turning
cloudnorm's errors into module failures, and cloudnorm's models into plain data."""

from __future__ import annotations

import contextlib
import datetime
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import cloudnorm
    from cloudnorm import hostkeys
except ImportError:
    HAS_CLOUDNORM = False
    CLOUDNORM_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_CLOUDNORM = True
    CLOUDNORM_IMPORT_ERROR = None

#: Options every module has (documented in the cloudnorm.cloud.cloud doc fragment).
CLOUD_ARGUMENT_SPEC = dict(
    cloud=dict(type="str", required=True),
    config_files=dict(type="list", elements="path"),
)

#: Tags cloudnorm keeps on the servers it creates for itself (owner, login record,
#: host keys); they describe the server, they are not the user's tags.
INTERNAL_TAG_PREFIX = "cloudnorm:"


def cloudnorm_module(argument_spec, **kwargs):
    """An AnsibleModule with the shared cloud options, failing early when cloudnorm is
    not importable by the module's Python."""
    spec = dict(CLOUD_ARGUMENT_SPEC)
    spec.update(argument_spec)
    module = AnsibleModule(argument_spec=spec, **kwargs)
    if not HAS_CLOUDNORM:
        module.fail_json(msg=missing_required_lib("cloudnorm"),
                         exception=CLOUDNORM_IMPORT_ERROR)
    return module


def connect(cloud, config_files=None):
    """``cloudnorm.connect`` with the modules' option names."""
    kwargs = {}
    if config_files:
        kwargs["config_files"] = list(config_files)
    return cloudnorm.connect(cloud, **kwargs)


@contextlib.contextmanager
def failing_on_errors(module):
    """Turn a cloudnorm error into ``fail_json`` with cloudnorm's own message, which says
    what went wrong and what to do about it."""
    try:
        yield
    except cloudnorm.CloudnormError as exc:
        details = dict(error=type(exc).__name__)
        if exc.cloud:
            details["cloud"] = exc.cloud
        candidates = getattr(exc, "candidates", None)
        if candidates:
            details["candidates"] = list(candidates)
        module.fail_json(msg=str(exc), **details)


@contextlib.contextmanager
def opened_cloud(module):
    """The cloud named by the module's options, closed afterwards; errors fail the module."""
    with failing_on_errors(module):
        cloud = connect(module.params["cloud"], module.params.get("config_files"))
        try:
            yield cloud
        finally:
            cloud.close()


def _plain(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


def decision_to_dict(decision):
    return dict(step=decision.step, choice=decision.choice, reason=decision.reason)


def server_to_dict(server):
    """A server as module output: every normalized field, the provider's raw record
    left out (its shape differs between providers)."""
    return dict(
        id=server.id,
        name=server.name,
        status=server.status,
        cloud=server.location.cloud,
        region=server.location.region,
        zone=server.location.zone,
        image=server.image,
        flavor=server.flavor,
        addresses=[dict(ip=a.ip, version=a.version, network=a.network, public=a.public,
                        reason=a.reason, kind=a.kind) for a in server.addresses],
        public_v4=server.public_v4,
        public_v6=server.public_v6,
        private_v4=server.private_v4,
        interface_ip=server.interface_ip,
        ssh_user=server.ssh_user,
        ssh_port=server.ssh_port,
        host_keys=list(server.host_keys),
        key_name=server.key_name,
        tags=dict(server.tags),
        created=_plain(server.created),
        decisions=[decision_to_dict(d) for d in server.decisions],
    )


def user_tags(server):
    """The server's tags without the ones cloudnorm keeps for itself."""
    return dict((k, v) for k, v in server.tags.items() if not k.startswith(INTERNAL_TAG_PREFIX))


def known_hosts(server):
    """known_hosts lines for the address and port to SSH to, from the host keys cloudnorm
    verified against the server's console; empty when it has none."""
    if not server.interface_ip or not server.host_keys:
        return []
    return hostkeys.known_hosts_lines(server.host_keys, server.interface_ip, server.ssh_port)


def image_to_dict(image):
    return dict(id=image.id, name=image.name, os_distro=image.os_distro,
                os_version=image.os_version, architecture=image.architecture,
                created=_plain(image.created), min_ram=image.min_ram, min_disk=image.min_disk,
                status=image.status, visibility=image.visibility, login_user=image.login_user)


def flavor_to_dict(flavor):
    return dict(id=flavor.id, name=flavor.name, ram=flavor.ram, vcpus=flavor.vcpus,
                disk=flavor.disk, is_public=flavor.is_public, disabled=flavor.disabled)


def network_to_dict(network):
    return dict(id=network.id, name=network.name, public=network.public,
                reason=network.reason, external=network.external, usable=network.usable,
                attachable=network.attachable, shared=network.shared,
                subnets=list(network.subnets), ip_versions=list(network.ip_versions))
