"""Fresco client: Python SDK and OpenStackClient plugin."""

__version__ = "0.1.0"
