"""What the control socket asks of a node."""

from zope.interface import Attribute, Interface


class IControlledNode(Interface):
    """
    A node as its control socket sees it: who it is, what it knows, and the few operations a
    C{phantomctl} command starts. L{phantom.control.responses} turns the answers into the
    control commands' responses.
    """

    nodeId = Attribute("The node's 32-byte id.")
    apAddress = Attribute("The node's own 16-byte AP-address.")
    address = Attribute("C{host:port} of its TLS port, or C{None} before it listens.")
    apiAddress = Attribute("C{host:port} of its DHT module API, or C{None} before it listens.")
    reactor = Attribute("Its reactor: uptime and ages are measured on its clock, tunnel probes timed.")
    startedAt = Attribute("When it was started, in the reactor's seconds; C{None} before.")
    device = Attribute("Its tun device (with a C{name}), or C{None} without one.")
    router = Attribute(
        "The packet router of its tun device (C{tunnels}, and C{counts}: packets per event), or C{None} without one."
    )

    def linkCounts():
        """
        @return: how many links it has open, and over how many TLS connections.
        """

    def linkedPeers():
        """
        @return: the nodes it has open links with, as dicts with C{nodeId} (bytes),
            C{address} (C{host:port}), C{inbound} and C{outbound} (link counts).
        """

    def routingTable():
        """
        @return: its routing table: iterating gives its contacts (C{nodeId}, C{host},
            C{port}); C{summary()} its buckets as dicts (C{index}, C{size}, C{replacements},
            C{lastTouched}).
        """

    def lookupCounts():
        """
        @return: how many lookups it has run, and how many requests they sent.
        """

    def storedCount():
        """
        @return: how many records it stores for the network database.
        """

    def put(key, value, ttl, replication):
        """
        Store an opaque value in the network database, as a module-API PUT does.

        @return: a Deferred of how many other nodes accepted it: an int, or a
            L{phantom.netdb.interfaces.PutOutcome} that also says whether the node keeps it.
        """

    def get(key):
        """
        Find an opaque value in the network database, as a module-API GET does.

        @return: a Deferred of the value, or C{None}.
        """

    def findRoute(apAddress):
        """
        @param apAddress: 16 bytes.
        @return: a Deferred of the verified routing entry of C{apAddress} (C{sequence},
            C{expires}, C{entryNodes} with C{nodeId}, C{host}, C{port}), or C{None}.
        """

    def buildPath(kind, shape):
        """
        Build a routing path.

        @param kind: a L{phantom.path.interfaces.PathKind}.
        @param shape: a L{phantom.path.plan.PathShape}.
        @return: a Deferred of the path (C{kind}, C{apAddress}, C{nodes}, C{phases}), failing
            with L{phantom.errors.PathFailed}.
        """

    def ownedPaths():
        """
        @return: the paths it owns (C{kind}, C{apAddress}, C{link}, C{builtAt}, C{nodes}).
        """

    def pathStates():
        """
        @return: for each kind of path it keeps built (entry, exit), a dict: C{kind}, C{wanted},
            C{built}, C{building}, C{failures} (since the last success) and C{last_error}.
        """

    def connectTunnel(apAddress, factory):
        """
        Open a tunnel to C{apAddress}, with end-to-end TLS, for a protocol of C{factory}.

        @return: a Deferred of the connected protocol.
        """

    def exitAddresses():
        """
        @return: the exit APs it connects out from (16 bytes each; never published): that of its
            newest exit path first (or of the next one, while it has none), then those of older
            exit paths still in use.
        """

    def ownedTunnels():
        """
        @return: the tunnels it owns an end of (C{outbound}, C{getPeer()}, C{openedAt},
            C{bytesSent}, C{bytesReceived}).
        """

    def carriedCount():
        """
        @return: how many tunnels it carries for others.
        """
