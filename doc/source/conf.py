"""Sphinx configuration for cloudnorm's documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath("../.."))

project = "cloudnorm"
copyright = "2026, the cloudnorm authors"
author = "the cloudnorm authors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_mock_imports = ["openstack", "keystoneauth1", "boto3", "botocore", "google"]
nitpicky = False
intersphinx_mapping = {}
html_theme = "alabaster"
exclude_patterns = ["build"]
