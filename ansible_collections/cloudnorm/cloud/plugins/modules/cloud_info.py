#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cloudnorm developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: cloud_info
short_description: What cloudnorm discovers on a cloud, with the reasons
description:
  - The images, flavors and networks of a cloud, normalized; every network says whether
    servers on it are reachable from outside and why.
  - The network new servers go on, and, when asked, the image cloudnorm boots for an OS
    name and the flavor it picks for a size, each with the reason.
version_added: 0.1.0
author:
  - cloudnorm developers (!UNKNOWN)
extends_documentation_fragment:
  - cloudnorm.cloud.cloud
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  gather:
    description:
      - Which lists to return.
    type: list
    elements: str
    choices: [images, flavors, networks]
    default: [images, flavors, networks]
  image:
    description:
      - An OS name (C(ubuntu-22.04)); returns the image cloudnorm would boot for it and
        the login user of that image, in C(image_choice).
    type: str
  min_ram:
    description:
      - Least RAM in MiB; returns the flavor cloudnorm would pick in C(flavor_choice).
    type: int
  min_vcpus:
    description:
      - Least number of vCPUs; returns the flavor cloudnorm would pick in C(flavor_choice).
    type: int
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
- name: Which networks are public on this cloud, and why
  cloudnorm.cloud.cloud_info:
    cloud: mycloud
    gather: [networks]
  register: discovered

- name: Show them
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ 'public' if item.public else 'private' }} - {{ item.reason }}"
  loop: "{{ discovered.networks }}"

- name: What a 2 GiB Ubuntu 22.04 server would be made of
  cloudnorm.cloud.cloud_info:
    cloud: mycloud
    gather: []
    image: ubuntu-22.04
    min_ram: 2048
  register: plan
"""

RETURN = r"""
cloud:
  description: Where the cloud is.
  returned: always
  type: dict
  contains:
    name:
      description: The cloud's name in C(clouds.yaml).
      type: str
    provider:
      description: C(openstack), C(aws) or C(gce).
      type: str
    region:
      description: Region.
      type: str
    profile:
      description: The cloudnorm profile (vendor knowledge) in use.
      type: str
images:
  description: Every image the account can see, normalized.
  returned: when C(images) is gathered
  type: list
  elements: dict
  sample:
    - id: ami-0ab2204000000002
      name: ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240501
      os_distro: ubuntu
      os_version: "22.04"
      architecture: x86_64
flavors:
  description: Every flavor (instance type) the account can use; RAM in MiB, disk in GiB.
  returned: when C(flavors) is gathered
  type: list
  elements: dict
  sample:
    - {id: "2", name: m1.small, ram: 2048, vcpus: 1, disk: 20}
networks:
  description: Networks with C(public), C(external), C(usable) and the C(reason) for them.
  returned: when C(networks) is gathered
  type: list
  elements: dict
  sample:
    - id: 5f0c...
      name: public
      public: true
      external: true
      reason: "router:external with subnet 203.0.113.0/27: floating IPs come from here"
default_network:
  description:
    - The network new servers go on and why (C(step), C(choice), C(reason)); empty
      when the cloud has no network service and places servers itself.
  returned: always
  type: dict
image_choice:
  description: The image for I(image), its login user, and the reasons.
  returned: when I(image) is given
  type: dict
  contains:
    image:
      description: The image.
      type: dict
    reason:
      description: Why this image.
      type: str
    login_user:
      description: The user a new server of this image lets in first.
      type: str
    login_user_reason:
      description: Where that user name comes from.
      type: str
flavor_choice:
  description: The smallest flavor with I(min_ram) and I(min_vcpus), and why.
  returned: when I(min_ram) or I(min_vcpus) is given
  type: dict
  contains:
    flavor:
      description: The flavor.
      type: dict
    reason:
      description: Why this flavor.
      type: str
"""

from ansible_collections.cloudnorm.cloud.plugins.module_utils.common import (
    cloudnorm_module,
    decision_to_dict,
    flavor_to_dict,
    image_to_dict,
    network_to_dict,
    opened_cloud,
)


def discover(cloud, params):
    gather = params["gather"]
    result = dict(cloud=dict(name=cloud.name, provider=cloud.provider,
                             region=cloud.location.region, profile=cloud.profile.name))
    if "images" in gather:
        result["images"] = [image_to_dict(i) for i in cloud.list_images()]
    if "flavors" in gather:
        result["flavors"] = [flavor_to_dict(f) for f in cloud.list_flavors()]
    if "networks" in gather:
        result["networks"] = [network_to_dict(n) for n in cloud.list_networks()]
    decision = cloud.choose_network()
    result["default_network"] = decision_to_dict(decision) if decision is not None else {}
    if params["image"]:
        image, why = cloud.choose_image(params["image"])
        user, user_reason = cloud.login_user(image)
        result["image_choice"] = dict(image=image_to_dict(image), reason=why.reason,
                                      login_user=user, login_user_reason=user_reason)
    if params["min_ram"] is not None or params["min_vcpus"] is not None:
        flavor, why = cloud.choose_flavor(min_ram=params["min_ram"],
                                          min_vcpus=params["min_vcpus"])
        result["flavor_choice"] = dict(flavor=flavor_to_dict(flavor), reason=why.reason)
    return result


def main():
    module = cloudnorm_module(
        dict(
            gather=dict(type="list", elements="str", choices=["images", "flavors", "networks"],
                        default=["images", "flavors", "networks"]),
            image=dict(type="str"),
            min_ram=dict(type="int"),
            min_vcpus=dict(type="int"),
        ),
        supports_check_mode=True,
    )
    with opened_cloud(module) as cloud:
        result = discover(cloud, module.params)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
