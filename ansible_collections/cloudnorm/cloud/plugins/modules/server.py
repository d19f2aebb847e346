#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cloudnorm developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: server
short_description: A server you can SSH into, on any cloud cloudnorm knows
description:
  - Creates a server with C(cloudnorm), which picks the image for an OS name, the
    smallest flavor that fits, the network and the public address the way each cloud
    needs, and returns once the server answers SSH with host keys verified against its
    console.
  - Or removes a server and everything cloudnorm created for it (floating IP, security
    group, key pair).
  - A server is found by its exact I(name) in the cloud. An existing server is left as it
    is (C(changed=false)); its image, flavor, tags and public address are not compared
    with the options.
  - The result has what the next play needs to connect (C(interface_ip), C(ssh_port),
    C(ssh_user)) and the verified host keys as C(known_hosts) lines.
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
      - Name of the server; it must be unique in the cloud.
    type: str
    required: true
  state:
    description:
      - C(present) creates the server unless one with this name exists.
      - C(absent) removes it; removing a server that does not exist is no change.
    type: str
    choices: [present, absent]
    default: present
  image:
    description:
      - An OS name such as C(ubuntu-22.04) or C(debian-12) (the newest public image of
        it is used, whatever the cloud calls it), or an image name or id.
      - Without it, the cloud's C(cloudnorm.defaults.image) in C(clouds.yaml), else
        C(ubuntu-22.04).
    type: str
  flavor:
    description:
      - Flavor (instance type) name or id. Without it, the smallest flavor with at least
        I(min_ram) and I(min_vcpus) is used.
    type: str
  min_ram:
    description:
      - Least RAM in MiB when cloudnorm chooses the flavor.
    type: int
  min_vcpus:
    description:
      - Least number of vCPUs when cloudnorm chooses the flavor.
    type: int
  network:
    description:
      - Network (or subnet) to attach the server to, by name or id. Without it, cloudnorm
        chooses the network new servers belong on and records why.
    type: str
  authorized_keys:
    description:
      - Public keys (OpenSSH format) allowed to log in as root and as the image's login
        user once the server is bootstrapped.
    type: list
    elements: str
    default: []
  bootstrap:
    description:
      - Install I(authorized_keys) and turn password logins off, both verified over SSH.
    type: bool
    default: true
  wait:
    description:
      - Wait until the server is reachable over SSH (C(present)) or gone (C(absent)).
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait at most.
    type: float
    default: 600
  tags:
    description:
      - Tags (metadata) to set on a new server. The inventory plugin
        M(cloudnorm.cloud.servers) groups servers by them.
    type: dict
  userdata:
    description:
      - What the server's first boot runs (cloud-init). A dict is sent as a cloud-config;
        a string is sent exactly as given (a cloud-config, a shell script, a MIME
        multi-part archive). One larger than the cloud takes fails before anything is
        created.
    type: raw
  availability_zone:
    description:
      - Availability zone (on GCE, the zone) to boot in. Without it, the cloud chooses.
    type: str
  security_groups:
    description:
      - Security groups (names or ids; on GCE, network tags) added to the one cloudnorm
        opens for SSH, never in its place.
    type: list
    elements: str
    default: []
  public:
    description:
      - C(false) gives the server no public address; it is reached on its private
        address, for automation running inside the cloud's network.
      - C(true) gives it a public address even when the cloud's configuration says
        private.
      - "Without it, the cloud's configuration decides: C(private: true) or
        C(cloudnorm: access: private) in its C(clouds.yaml) entry makes servers
        private; otherwise they are public."
    type: bool
  boot_from_volume:
    description:
      - C(true) puts the root disk on a block storage volume (Cinder on OpenStack); on
        AWS and GCE the root disk always is one.
      - Without it, a server boots from a volume where the chosen flavor has disk 0 and
        the cloud has block storage. C(false) never does (flavors with disk 0 are then
        passed over).
    type: bool
  volume_size:
    description:
      - GiB of the root volume. Without it, what the image (or the flavor) needs.
    type: int
  volumes:
    description:
      - GiB of each data volume made with the server; they are deleted with it.
    type: list
    elements: int
    default: []
seealso:
  - module: cloudnorm.cloud.server_info
  - module: cloudnorm.cloud.cloud_info
  - plugin: cloudnorm.cloud.servers
    plugin_type: inventory
attributes:
  check_mode:
    support: full
    details: Finds the server by name and reports whether it would be created or removed.
  diff_mode:
    support: none
  platform:
    platforms: all
  action_group:
    membership: [cloudnorm.cloud.cloudnorm]
"""

EXAMPLES = r"""
- name: An Ubuntu 22.04 server with at least 2 GiB of RAM
  cloudnorm.cloud.server:
    cloud: mycloud
    name: web1
    image: ubuntu-22.04
    min_ram: 2048
    authorized_keys:
      - "{{ lookup('file', '~/.ssh/id_ed25519.pub') }}"
    tags:
      role: web
  register: web1

- name: A server with no public address, from automation inside the cloud's network
  cloudnorm.cloud.server:
    cloud: mycloud
    name: worker1
    public: false
  register: worker1

- name: Trust exactly the host keys cloudnorm verified
  ansible.builtin.known_hosts:
    path: "{{ playbook_dir }}/known_hosts"
    name: "{{ item.split(' ')[0] }}"
    key: "{{ item }}"
  loop: "{{ web1.known_hosts }}"

- name: Reach it in the next play
  ansible.builtin.add_host:
    name: web1
    ansible_host: "{{ web1.server.interface_ip }}"
    ansible_port: "{{ web1.server.ssh_port }}"
    ansible_user: "{{ web1.server.ssh_user }}"
    ansible_ssh_common_args: >-
      -o UserKnownHostsFile={{ playbook_dir }}/known_hosts -o StrictHostKeyChecking=yes

- name: Remove it, with its floating IP, security group and key pair
  cloudnorm.cloud.server:
    cloud: mycloud
    name: web1
    state: absent
"""

RETURN = r"""
server:
  description:
    - The server, normalized the same way on every cloud. Empty when the server is
      absent, and in check mode when it would be created.
  returned: always
  type: dict
  contains:
    id:
      description: The cloud's id of the server.
      type: str
      sample: i-0a1b2c3d4e5f60718
    name:
      description: Name of the server.
      type: str
      sample: web1
    status:
      description: One of C(pending), C(running), C(stopping), C(stopped), C(terminated), C(error).
      type: str
      sample: running
    cloud:
      description: The cloud's name in C(clouds.yaml).
      type: str
    region:
      description: Region of the server.
      type: str
    zone:
      description: Availability zone, when the cloud reports one.
      type: str
    image:
      description: Image the server was booted from.
      type: str
    flavor:
      description: Flavor (instance type) of the server.
      type: str
    addresses:
      description: Every address, with whether it can be reached from outside and why.
      type: list
      elements: dict
      sample:
        - ip: 203.0.113.7
          version: 4
          network: public
          public: true
          kind: floating
          reason: floating IP from external network 'public'
    public_v4:
      description: Public IPv4 address, if any.
      type: str
    public_v6:
      description: Public IPv6 address, if any.
      type: str
    private_v4:
      description: Private IPv4 address, if any.
      type: str
    interface_ip:
      description: The address to SSH to.
      type: str
    ssh_user:
      description: The user cloudnorm logged in as.
      type: str
      sample: ubuntu
    ssh_port:
      description: The port to SSH to.
      type: int
      sample: 22
    host_keys:
      description: Host keys verified against the server's console, C(<type> <base64>).
      type: list
      elements: str
    key_name:
      description: Key pair the server was booted with, if any.
      type: str
    tags:
      description: The server's tags (metadata), including the ones cloudnorm keeps.
      type: dict
    created:
      description: When the server was created (ISO 8601).
      type: str
    decisions:
      description:
        - What cloudnorm chose for a new server (image, flavor, network, address, login
          user...) and why, as C(step), C(choice), C(reason).
      type: list
      elements: dict
known_hosts:
  description:
    - known_hosts lines for the server's SSH address and port, from the verified host
      keys; write them to a file and point C(UserKnownHostsFile) at it.
    - A server found again (a second run) has the host keys the cloud kept for it in
      its metadata, which may be fewer than the ones verified when it was created (a
      key too long for a metadata value is kept as a fingerprint only).
  returned: always
  type: list
  elements: str
  sample: ["203.0.113.7 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI..."]
"""

from ansible_collections.cloudnorm.cloud.plugins.module_utils.common import (
    cloudnorm_module,
    known_hosts,
    opened_cloud,
    server_to_dict,
)

try:
    from cloudnorm import CreateRequest, NotFound
except ImportError:
    pass  # cloudnorm_module() reports the missing library


def find_server(cloud, name):
    """The server named ``name``, or None; more than one fails in cloudnorm (Ambiguous)."""
    try:
        return cloud.get_server(name)
    except NotFound:
        return None


def tags_option(tags):
    """Tags as cloudnorm stores them: strings (YAML may have made a value a number)."""
    if not tags:
        return None
    return dict((str(key), str(value)) for key, value in tags.items())


def userdata_option(value):
    """A dict is a cloud-config; anything else goes as text."""
    if value is None or isinstance(value, dict):
        return value
    return str(value)


def present(module, cloud):
    params = module.params
    existing = find_server(cloud, params["name"])
    if existing is not None:
        return False, existing
    if module.check_mode:
        return True, None
    created = cloud.create_server(CreateRequest(
        params["name"], image=params["image"], flavor=params["flavor"],
        min_ram=params["min_ram"], min_vcpus=params["min_vcpus"], network=params["network"],
        authorized_keys=tuple(params["authorized_keys"] or ()),
        bootstrap=params["bootstrap"], wait=params["wait"], timeout=params["timeout"],
        tags=tags_option(params["tags"]), userdata=userdata_option(params["userdata"]),
        availability_zone=params["availability_zone"],
        security_groups=tuple(params["security_groups"] or ()), public=params["public"],
        boot_from_volume=params["boot_from_volume"], volume_size=params["volume_size"],
        volumes=tuple(params["volumes"] or ())))
    return True, created


def absent(module, cloud):
    existing = find_server(cloud, module.params["name"])
    if existing is None:
        return False, None
    if not module.check_mode:
        # delete_server also answers False when the server went away meanwhile.
        cloud.delete_server(existing, wait=module.params["wait"],
                            timeout=module.params["timeout"])
    return True, None


def main():
    module = cloudnorm_module(
        dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            image=dict(type="str"),
            flavor=dict(type="str"),
            min_ram=dict(type="int"),
            min_vcpus=dict(type="int"),
            network=dict(type="str"),
            authorized_keys=dict(type="list", elements="str", default=[], no_log=False),
            bootstrap=dict(type="bool", default=True),
            wait=dict(type="bool", default=True),
            timeout=dict(type="float", default=600),
            tags=dict(type="dict"),
            userdata=dict(type="raw"),
            availability_zone=dict(type="str"),
            security_groups=dict(type="list", elements="str", default=[]),
            public=dict(type="bool"),
            boot_from_volume=dict(type="bool"),
            volume_size=dict(type="int"),
            volumes=dict(type="list", elements="int", default=[]),
        ),
        mutually_exclusive=[("flavor", "min_ram"), ("flavor", "min_vcpus")],
        supports_check_mode=True,
    )
    with opened_cloud(module) as cloud:
        if module.params["state"] == "present":
            changed, server = present(module, cloud)
        else:
            changed, server = absent(module, cloud)
    module.exit_json(changed=changed,
                     server=server_to_dict(server) if server is not None else {},
                     known_hosts=known_hosts(server) if server is not None else [])


if __name__ == "__main__":
    main()
