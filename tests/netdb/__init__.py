"""Tests of the network database."""
