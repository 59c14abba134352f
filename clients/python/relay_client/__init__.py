"""Relay's Python client SDK. It never imports the server package ``relay``."""
