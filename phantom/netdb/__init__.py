"""
The network database: a Kademlia DHT over the link layer (k = 20, alpha = 3, 256-bit ids),
typed and signed records, node sampling for path building, and the VoidPhone DHT module API.
"""

K = 20
"""Bucket size and replication width of the DHT."""

ALPHA = 3
"""How many lookup requests are in flight at once."""

ID_BITS = 256
"""Node ids and keys are SHA-256 sized."""
