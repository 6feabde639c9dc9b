"""What the parts of the network database offer each other."""

from zope.interface import Interface


class PutOutcome(int):
    """
    How many other nodes accepted a value put, with C{here}: whether this node keeps it too
    (not when its store is full).
    """

    def __new__(cls, replicas, here=True):
        outcome = super().__new__(cls, replicas)
        outcome.here = here
        return outcome

    def __repr__(self):
        return f"PutOutcome({int(self)}, here={self.here})"


class IValueStore(Interface):
    """
    Opaque values by 32-byte key, as the VoidPhone DHT module API stores and finds them:
    locally and on the nodes closest to the key.
    """

    def put(key, value, ttl, replication):
        """
        Store C{value} (1 to 65495 bytes) under C{key} (32 bytes) for about C{ttl} seconds on
        about C{replication} nodes: hints that the store may clamp. Storing is best effort and
        a later C{get} on the same node finds the value at once; what it returns (if anything)
        need not be waited for.
        """

    def get(key):
        """
        Find the value stored under C{key}.

        @return: a Deferred that fires with the value (bytes) or C{None} when none is found;
            it always fires within a bounded time and never fails.
        """
