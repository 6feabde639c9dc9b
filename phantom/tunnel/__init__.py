"""Routing tunnels."""
