"""The openstack driver: see config.py, normalize.py, transport.py, network.py and
driver.py. Nothing here imports openstacksdk."""
