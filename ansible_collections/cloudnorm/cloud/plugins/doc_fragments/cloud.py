# -*- coding: utf-8 -*-
# Copyright: cloudnorm developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations


class ModuleDocFragment:
    # The options every cloudnorm module shares: which cloud, from which clouds.yaml.
    DOCUMENTATION = r"""
options:
  cloud:
    description:
      - Name of the cloud in C(clouds.yaml), as for C(cloudnorm.connect()).
      - OpenStack, AWS and GCE clouds are named the same way; see the cloudnorm
        configuration guide for the C(cloudnorm:) section of an entry.
    type: str
    required: true
  config_files:
    description:
      - C(clouds.yaml) files to read instead of the usual places
        (C(OS_CLIENT_CONFIG_FILE), C(./clouds.yaml), C(~/.config/openstack/clouds.yaml),
        C(/etc/openstack/clouds.yaml)).
    type: list
    elements: path
requirements:
  - python >= 3.10
  - cloudnorm (with C(cloudnorm[aws]) for AWS and C(cloudnorm[gce]) for GCE clouds)
notes:
  - "The modules talk to the cloud from the machine they run on. Run them on the
    controller (C(hosts: localhost), C(connection: local)) with the Python that has
    cloudnorm installed, for example
    C(ansible_python_interpreter: '{{ ansible_playbook_python }}')."
"""
