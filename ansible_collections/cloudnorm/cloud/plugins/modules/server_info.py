#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cloudnorm developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: server_info
short_description: Servers of a cloud, normalized by cloudnorm
description:
  - Lists the servers of a cloud, or the one named I(name), with their addresses
    classified (public or not, and why), the SSH user, port and verified host keys
    of the servers cloudnorm created.
version_added: 0.1.0
author:
  - cloudnorm developers (!UNKNOWN)
extends_documentation_fragment:
  - cloudnorm.cloud.cloud
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  name:
    description:
      - Exact name or id of one server. Without it, every server of the account is listed.
      - A name that matches no server gives an empty list; one that matches several
        fails with their ids.
    type: str
attributes:
  check_mode:
    support: full
    details: It only reads.
  diff_mode:
    support: none
  platform:
    platforms: all
  action_group:
    membership: [cloudnorm.cloud.cloudnorm]
seealso:
  - module: cloudnorm.cloud.server
"""

EXAMPLES = r"""
- name: Every server of the account
  cloudnorm.cloud.server_info:
    cloud: mycloud
  register: found

- name: Show how each one is reached
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.ssh_user }}@{{ item.interface_ip }}:{{ item.ssh_port }}"
  loop: "{{ found.servers }}"

- name: One server
  cloudnorm.cloud.server_info:
    cloud: mycloud
    name: web1
  register: web1
"""

RETURN = r"""
servers:
  description:
    - The servers, each as the C(server) result of M(cloudnorm.cloud.server) describes it.
  returned: always
  type: list
  elements: dict
known_hosts:
  description:
    - known_hosts lines for every listed server whose host keys cloudnorm verified.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.cloudnorm.cloud.plugins.module_utils.common import (
    cloudnorm_module,
    known_hosts,
    opened_cloud,
    server_to_dict,
)

try:
    from cloudnorm import NotFound
except ImportError:
    pass  # cloudnorm_module() reports the missing library


def main():
    module = cloudnorm_module(dict(name=dict(type="str")), supports_check_mode=True)
    with opened_cloud(module) as cloud:
        if module.params["name"]:
            try:
                servers = [cloud.get_server(module.params["name"])]
            except NotFound:
                servers = []
        else:
            servers = cloud.list_servers()
    module.exit_json(changed=False, servers=[server_to_dict(s) for s in servers],
                     known_hosts=[line for s in servers for line in known_hosts(s)])


if __name__ == "__main__":
    main()
