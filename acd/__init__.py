"""Homeline server: SIP trunks, ACD engine, agent web service."""

from acd.errors import AcdError, ConfigError

__all__ = ["AcdError", "ConfigError", "__version__"]

__version__ = "0.1.0"
