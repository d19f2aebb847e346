"""The contract every sandbox cloud must pass; see tests/functional/sandbox_clouds.py."""
