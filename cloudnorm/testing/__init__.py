"""Local clouds for tests and for people automating servers: ``python -m cloudnorm.testing``.

``openstack.OpenStackStack`` runs the real OpenStack services on 127.0.0.1, shaped by the
quirk profiles in ``profiles/``. Nothing heavy is imported here.
"""
