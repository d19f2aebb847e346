"""A local Compute Engine for tests: compute v1 REST on 127.0.0.1 (see :mod:`.api`), its
seed data (:mod:`.catalog`) and :class:`GceSandbox`, which starts and stops it.

``python -m cloudnorm.testing.gce [--workdir DIR] -- COMMAND`` runs COMMAND with
``OS_CLIENT_CONFIG_FILE`` naming the sandbox's clouds.yaml; :func:`run` does the same from
Python.
"""

from cloudnorm.testing.gce.catalog import CUSTOM_NETWORK, OSLOGIN_PROJECT, PROJECT, ZONE
from cloudnorm.testing.gce.sandbox import CLOUD, GceSandbox, run

__all__ = ["CLOUD", "CUSTOM_NETWORK", "OSLOGIN_PROJECT", "PROJECT", "ZONE", "GceSandbox", "run"]
