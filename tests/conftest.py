"""Shared test configuration."""

import os

# Google's auth libraries probe the GCE metadata server (169.254.169.254) when they look
# for credentials; tests must never leave the machine, so point them at a closed local port.
os.environ["NO_GCE_CHECK"] = "true"
os.environ["GCE_METADATA_HOST"] = "127.0.0.1:9"
os.environ["GCE_METADATA_IP"] = "127.0.0.1:9"

pytest_plugins = ["cloudnorm.testing.pytest_plugin"]
