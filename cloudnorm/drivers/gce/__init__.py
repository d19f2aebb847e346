"""The gce driver: see config.py, normalize.py, transport.py and driver.py (and network.py,
hostkeys.py). Importing this package imports no SDK."""
