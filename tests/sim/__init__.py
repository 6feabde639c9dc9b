"""Tests of the network simulation."""
