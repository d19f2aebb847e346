"""``import cloudnorm`` stays cheap: no provider SDK, no cache library at import time."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEAVY = ("openstack", "boto3", "botocore", "google", "keystoneauth1", "dogpile")


def _imported_modules(code: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    modules = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":   # the header line
                modules.append(name)
    return modules


@pytest.fixture(scope="module")
def cloudnorm_imports():
    return _imported_modules("import cloudnorm")


def test_importtime_output_is_understood(cloudnorm_imports):
    assert "cloudnorm" in cloudnorm_imports
    assert "cloudnorm.errors" in cloudnorm_imports


@pytest.mark.parametrize("package", HEAVY)
def test_import_cloudnorm_does_not_import(cloudnorm_imports, package):
    offending = [m for m in cloudnorm_imports if m == package or m.startswith(package + ".")]
    assert offending == [], f"import cloudnorm pulled in {offending[:5]}"


def test_public_names_without_heavy_imports():
    modules = _imported_modules(
        "import cloudnorm; cloudnorm.Address; cloudnorm.ConfigError; cloudnorm.KeyPair")
    assert not [m for m in modules if m.split(".")[0] in HEAVY]
