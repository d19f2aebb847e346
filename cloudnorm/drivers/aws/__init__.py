"""The aws driver: see config.py, normalize.py, transport.py and driver.py (with
network.py and images.py)."""
