# -*- coding: utf-8 -*-
# Copyright: cloudnorm developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
name: servers
short_description: Servers of several clouds at once, ready to SSH to
description:
  - Lists the servers of every cloud in I(clouds) through cloudnorm, with C(ansible_host),
    C(ansible_port) and C(ansible_user) set to the address, port and user cloudnorm
    logged in with when it created the server (for other servers, the public address,
    port 22 and no user).
  - "Groups: C(cloudnorm) (every server), C(cloud_<name>), C(region_<region>),
    C(os_<distro>) and C(os_<distro>_<version>) (from the server's image), and
    C(tag_<key>_<value>) for each of the server's own tags."
  - "Host keys: C(cloudnorm_known_hosts) holds known_hosts lines built from the host keys
    cloudnorm verified against the server's console when it created it (none for servers
    it did not create). Host key checking stays on: set I(known_hosts_file) to a file
    holding those lines (a play on localhost can write it from
    C(cloudnorm.cloud.server)'s C(known_hosts) return or from these host variables) and
    every host gets C(ansible_ssh_common_args) pointing C(UserKnownHostsFile) at it
    with C(StrictHostKeyChecking=yes)."
  - The configuration file must end in C(cloudnorm.yml) or C(cloudnorm.yaml).
version_added: 0.1.0
author:
  - cloudnorm developers (!UNKNOWN)
requirements:
  - python >= 3.10
  - cloudnorm
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: The name of this plugin; it makes the file a cloudnorm inventory.
    type: str
    required: true
    choices: [cloudnorm.cloud.servers]
  clouds:
    description:
      - Names of clouds in C(clouds.yaml); their servers are listed together.
    type: list
    elements: str
    required: true
  config_files:
    description:
      - C(clouds.yaml) files to read instead of the usual places
        (C(OS_CLIENT_CONFIG_FILE), C(./clouds.yaml), C(~/.config/openstack/clouds.yaml)).
    type: list
    elements: path
  known_hosts_file:
    description:
      - known_hosts file for SSH to these servers. When set, every host gets
        C(ansible_ssh_common_args) with C(-o UserKnownHostsFile=<file>
        -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes), so only the
        keys in this file are accepted.
      - A relative path is taken from the directory C(ansible-playbook) runs in.
    type: path
  only_reachable:
    description:
      - List only servers with an address cloudnorm can point C(ansible_host) at.
    type: bool
    default: true
  fail_on_errors:
    description:
      - Fail when a cloud cannot be listed. When false, that cloud is skipped with a
        warning and the others are still listed.
    type: bool
    default: true
"""

EXAMPLES = r"""
# inventory/cloudnorm.yml
plugin: cloudnorm.cloud.servers
clouds:
  - mycloud
  - aws-eu
known_hosts_file: ~/deploy/known_hosts
keyed_groups:
  - key: cloudnorm_server.flavor
    prefix: flavor
"""

import shlex

from ansible.errors import AnsibleError
from ansible.inventory.group import to_safe_group_name
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable
from ansible_collections.cloudnorm.cloud.plugins.module_utils.common import (
    CLOUDNORM_IMPORT_ERROR,
    HAS_CLOUDNORM,
    connect,
    known_hosts,
    server_to_dict,
    user_tags,
)

try:
    from cloudnorm import CloudnormError
except ImportError:
    CloudnormError = Exception  # unused: parse() stops first when cloudnorm is missing


def _group(*parts):
    return to_safe_group_name("_".join(str(p) for p in parts), replacer="_", force=True,
                              silent=True)


class InventoryModule(BaseInventoryPlugin, Constructable):

    NAME = "cloudnorm.cloud.servers"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("cloudnorm.yml", "cloudnorm.yaml"))

    def parse(self, inventory, loader, path, cache=False):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        if not HAS_CLOUDNORM:
            raise AnsibleError("the cloudnorm.cloud.servers inventory needs the cloudnorm "
                               "library in Ansible's Python:\n%s" % CLOUDNORM_IMPORT_ERROR)
        self.inventory.add_group("cloudnorm")
        for name in self.get_option("clouds"):
            try:
                listed = self._list(name)
            except CloudnormError as exc:
                if self.get_option("fail_on_errors"):
                    raise AnsibleError("cloudnorm: %s" % exc) from exc
                self.display.warning("cloudnorm: skipping cloud '%s': %s" % (name, exc))
                continue
            for server, os_name in listed:
                self._add(server, os_name)

    def _list(self, name):
        """The cloud's servers with the OS of each one's image (distro, version)."""
        cloud = connect(name, self.get_option("config_files"))
        try:
            servers = cloud.list_servers()
            images = dict((i.id, i) for i in cloud.list_images()) if servers else {}
            listed = []
            for server in servers:
                image = images.get(server.image or "")
                listed.append((server, (image.os_distro, image.os_version) if image else None))
            return listed
        finally:
            cloud.close()

    def _hostname(self, server):
        """The server's name; a name another cloud's server already has gets the cloud's
        name appended, so both stay addressable."""
        name = server.name or server.id
        if name in self.inventory.hosts and \
                self.inventory.hosts[name].vars.get("cloudnorm_server", {}).get("id") != server.id:
            return "%s.%s" % (name, server.location.cloud)
        return name

    def _add(self, server, os_name):
        address = (server.interface_ip or server.public_v4 or server.public_v6
                   or server.private_v4)
        if address is None and self.get_option("only_reachable"):
            return
        host = self._hostname(server)
        self.inventory.add_host(host, group="cloudnorm")
        hostvars = dict(
            cloudnorm_server=server_to_dict(server),
            cloudnorm_cloud=server.location.cloud,
            cloudnorm_region=server.location.region,
            cloudnorm_os="-".join(p for p in os_name if p) if os_name else None,
            cloudnorm_known_hosts=known_hosts(server),
        )
        if address is not None:
            hostvars["ansible_host"] = address
            hostvars["ansible_port"] = server.ssh_port
        if server.ssh_user:
            hostvars["ansible_user"] = server.ssh_user
        known_hosts_file = self.get_option("known_hosts_file")
        if known_hosts_file:
            hostvars["ansible_ssh_common_args"] = (
                "-o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null"
                " -o StrictHostKeyChecking=yes" % shlex.quote(known_hosts_file))
        for key, value in hostvars.items():
            self.inventory.set_variable(host, key, value)

        groups = [_group("cloud", server.location.cloud)]
        if server.location.region:
            groups.append(_group("region", server.location.region))
        if os_name and os_name[0]:
            groups.append(_group("os", os_name[0]))
            if os_name[1]:
                groups.append(_group("os", os_name[0], os_name[1]))
        groups += [_group("tag", key, value) for key, value in sorted(user_tags(server).items())]
        for group in groups:
            self.inventory.add_group(group)
            self.inventory.add_child(group, host)

        strict = self.get_option("strict")
        self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), hostvars, host,
                                          strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, host,
                                       strict=strict)
