"""Benchmarks of cloudnorm against openstacksdk and Apache Libcloud on the local sandbox
clouds: ``python -m bench`` (see ``doc/source/benchmarks.rst``)."""
