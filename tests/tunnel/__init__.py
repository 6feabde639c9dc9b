"""Tests of the routing tunnels."""
