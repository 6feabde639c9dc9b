"""Tests of routing paths."""
