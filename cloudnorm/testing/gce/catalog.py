"""What the local Compute Engine holds when it starts: projects, zones, images, machine
types and networks, modelled on a real project's view of Google Cloud.

Public images live in their publishers' projects (``ubuntu-os-cloud``, ``debian-cloud``)
with several builds per family: the older ones ``DEPRECATED`` (replaced by the newest), as
Google does it. Machine types are the real sizes, including the shared-core e2 types and a
few families cloudnorm does not list by default.
"""

from __future__ import annotations

import ipaddress

#: The project the sandbox's clouds create servers in, and one with OS Login turned on.
PROJECT = "cloudnorm-sandbox"
OSLOGIN_PROJECT = "cloudnorm-oslogin"
IMAGE_PROJECTS = ("ubuntu-os-cloud", "debian-cloud")
ZONE = "us-central1-a"
ZONES = ("us-central1-a", "us-central1-b", "us-central1-c", "europe-west1-b", "us-east1-b")

#: External NAT addresses (TEST-NET-2, second quarter): the local EC2 uses the first
#: quarter for launch addresses and the upper half for Elastic IPs, and the OpenStack
#: profiles use 203.0.113.0/24, so all can run in one namespace without sharing one.
NAT_ADDRESSES = ipaddress.IPv4Network("198.51.100.64/26")

#: Subnets of the ``default`` auto-mode network, one per region as Google creates them.
DEFAULT_SUBNETS = {"us-central1": "10.128.0.0/20", "europe-west1": "10.132.0.0/20",
                   "us-east1": "10.142.0.0/20"}
#: A custom-mode network with a subnet in us-central1 only, and no rule for TCP 22.
CUSTOM_NETWORK = "custom-vpc"
CUSTOM_SUBNETS = {"custom-subnet": ("us-central1", "10.10.0.0/24")}

# (name, creationTimestamp, family, diskSizeGb, architecture); per family, the newest one
# is current and the others are deprecated in its favour.
IMAGES = {
    "ubuntu-os-cloud": [
        ("ubuntu-2204-jammy-v20240207", "2024-02-07T10:02:11.452-08:00", "ubuntu-2204-lts",
         10, "X86_64"),
        ("ubuntu-2204-jammy-v20240319", "2024-03-19T09:51:40.108-07:00", "ubuntu-2204-lts",
         10, "X86_64"),
        ("ubuntu-2204-jammy-v20240501", "2024-05-01T11:20:05.923-07:00", "ubuntu-2204-lts",
         10, "X86_64"),
        ("ubuntu-2204-jammy-arm64-v20240501", "2024-05-01T11:24:51.013-07:00",
         "ubuntu-2204-lts-arm64", 10, "ARM64"),
        ("ubuntu-2404-noble-amd64-v20240423", "2024-04-23T16:40:12.871-07:00",
         "ubuntu-2404-lts-amd64", 10, "X86_64"),
        ("ubuntu-2404-noble-amd64-v20240523", "2024-05-23T14:07:55.236-07:00",
         "ubuntu-2404-lts-amd64", 10, "X86_64"),
        ("ubuntu-2004-focal-v20240307", "2024-03-07T12:33:20.516-08:00", "ubuntu-2004-lts",
         10, "X86_64"),
    ],
    "debian-cloud": [
        ("debian-12-bookworm-v20240312", "2024-03-12T15:31:18.630-07:00", "debian-12", 10,
         "X86_64"),
        ("debian-12-bookworm-v20240415", "2024-04-15T10:16:03.317-07:00", "debian-12", 10,
         "X86_64"),
        ("debian-12-bookworm-arm64-v20240415", "2024-04-15T10:19:44.005-07:00",
         "debian-12-arm64", 10, "ARM64"),
        ("debian-11-bullseye-v20240415", "2024-04-15T10:12:37.889-07:00", "debian-11", 10,
         "X86_64"),
    ],
}

#: Where each image project's guest environment shows the host keys it makes at first boot:
#: ``console`` -- cloud-init prints them on the serial port (the Ubuntu images here stand
#: for images whose keys reach the console only); ``guest-attributes`` -- Google's guest
#: agent writes them to the instance's guest attributes (``hostkeys/<type>``) and the serial
#: port shows none (the Debian images, which run no cloud-init).
HOST_KEY_CHANNELS = {"ubuntu-os-cloud": "console", "debian-cloud": "guest-attributes"}

# (name, guestCpus, memoryMb, isSharedCpu)
MACHINE_TYPES = [
    ("e2-micro", 2, 1024, True), ("e2-small", 2, 2048, True), ("e2-medium", 2, 4096, True),
    ("e2-standard-2", 2, 8192, False), ("e2-standard-4", 4, 16384, False),
    ("e2-highcpu-2", 2, 2048, False), ("e2-highcpu-4", 4, 4096, False),
    ("e2-highmem-2", 2, 16384, False),
    ("n2d-standard-2", 2, 8192, False), ("n2d-highcpu-2", 2, 2048, False),
    ("n2-standard-2", 2, 8192, False), ("n2-standard-4", 4, 16384, False),
    ("n2-highcpu-2", 2, 2048, False),
    ("n1-standard-1", 1, 3840, False), ("n1-standard-2", 2, 7680, False),
    ("f1-micro", 1, 614, True), ("g1-small", 1, 1740, True),
    ("c3-standard-4", 4, 16384, False), ("t2d-standard-1", 1, 4096, False),
]

#: vCPUs a project may run per region (GCE's CPUS quota).
CPU_QUOTA = 24


def default_firewalls(network: str) -> list[dict[str, object]]:
    """The rules Google creates with a project's ``default`` network."""
    def rule(name: str, priority: int, ranges: list[str], allowed: list[dict[str, object]],
             description: str) -> dict[str, object]:
        return {"name": name, "network": network, "priority": priority,
                "sourceRanges": ranges, "allowed": allowed, "direction": "INGRESS",
                "description": description}
    return [
        rule("default-allow-internal", 65534, ["10.128.0.0/9"],
             [{"IPProtocol": "tcp", "ports": ["0-65535"]},
              {"IPProtocol": "udp", "ports": ["0-65535"]}, {"IPProtocol": "icmp"}],
             "Allow internal traffic on the default network"),
        rule("default-allow-ssh", 65534, ["0.0.0.0/0"], [{"IPProtocol": "tcp", "ports": ["22"]}],
             "Allow SSH from anywhere"),
        rule("default-allow-rdp", 65534, ["0.0.0.0/0"],
             [{"IPProtocol": "tcp", "ports": ["3389"]}], "Allow RDP from anywhere"),
        rule("default-allow-icmp", 65534, ["0.0.0.0/0"], [{"IPProtocol": "icmp"}],
             "Allow ICMP from anywhere"),
    ]


def custom_firewalls(network: str) -> list[dict[str, object]]:
    """A custom network's rules: internal traffic and web, no SSH."""
    return [
        {"name": "custom-allow-internal", "network": network, "priority": 1000,
         "sourceRanges": ["10.10.0.0/24"], "direction": "INGRESS",
         "allowed": [{"IPProtocol": "all"}], "description": "internal traffic"},
        {"name": "custom-allow-web", "network": network, "priority": 1000,
         "sourceRanges": ["0.0.0.0/0"], "direction": "INGRESS", "targetTags": ["web"],
         "allowed": [{"IPProtocol": "tcp", "ports": ["80", "443"]}],
         "description": "HTTP(S) to web servers"},
    ]
