"""Phantom: a node of the Phantom anonymity network on Twisted."""

__version__ = "0.1.0"
