"""A real, local OpenStack for tests: see ``stack.OpenStackStack``."""
