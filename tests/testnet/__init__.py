"""Tests of L{phantom.testnet}: the manifest, command lines, process handling, and real testnets."""
