"""
Client identities (thesis §2.12.3): every exit path has a routing key and AP-address of its own,
an I{exit AP}, that is the client certificate of the end-to-end TLS of every tunnel opened over
it. Exit APs are never published, and no two exit paths share one, so the servers a node talks
to never learn its published AP-address (that of its entry paths and hidden service), and
servers that collude link no more than the tunnels of one exit path.

The key of the next exit path is made ahead of it (L{ExitIdentities.pending}): a program on the
tun device connects out from that address before the path it will take exists.
"""

from cryptography.hazmat.primitives.asymmetric import ed25519
from phantom.link.ending import Ending

from phantom.address import formatAddress
from phantom.errors import TunnelFailed
from phantom.path.interfaces import PathKind
from phantom.tunnel.endpoint import EndToEnd


class ExitIdentity:
    """
    One exit path's client identity.

    @ivar routingKey: its Ed25519 routing key, made for it and kept in memory only.
    @ivar apAddress: the exit AP (16 bytes).
    @ivar endToEnd: the L{EndToEnd} contexts with its certificate.
    @ivar path: its exit path, once built (C{None} while it waits for one).
    @ivar tunnels: the open tunnels opened with it.
    """

    def __init__(self, routingKey, clock=None):
        self.routingKey = routingKey
        self.endToEnd = EndToEnd(routingKey, clock)
        self.apAddress = self.endToEnd.apAddress
        self.path = None
        self.tunnels = set()
        self.unused = Ending()
        """Ends once no tunnel opened with it is open (L{ExitIdentities.whenUnused}); a new one follows."""

    @property
    def pathGone(self):
        """Whether its exit path has gone (new tunnels never take this identity again)."""
        return self.path is not None and self.path.gone

    def __repr__(self):
        return f"<ExitIdentity {formatAddress(self.apAddress)}>"


class ExitIdentities:
    """
    The client identities of a node's exit paths: one made for each exit path as it is built,
    kept while the path lives or tunnels opened with it are open.

    @param clock: C{IReactorTime} for the identities' TLS (the global reactor if C{None}).
    @param generateKey: makes a fresh Ed25519 private key.
    @ivar pending: the identity the next exit path built takes.
    @ivar kept: the identities of exit paths, oldest first, while in use.
    """

    def __init__(self, clock=None, generateKey=ed25519.Ed25519PrivateKey.generate):
        self._clock = clock
        self._generateKey = generateKey
        self.pending = self._make()
        self.kept = []
        self._watchers = []

    def _make(self):
        return ExitIdentity(self._generateKey(), self._clock)

    def watch(self, f):
        """Call C{f()} whenever L{current} or L{addresses} may have changed."""
        self._watchers.append(f)

    def _changed(self):
        for watcher in self._watchers:
            watcher()

    # Events in

    def pathBuilt(self, path):
        """A path this node built: an exit path takes the pending identity, and a new one waits."""
        if path.kind != PathKind.EXIT:
            return
        identity, self.pending = self.pending, self._make()
        identity.path = path
        self.kept.append(identity)
        path.onGone(lambda: self._drop(identity))
        self._changed()

    def tunnelOpened(self, identity, tunnel):
        """C{tunnel} (an L{phantom.tunnel.transport.OwnerTunnel}) was opened with C{identity}."""
        identity.tunnels.add(tunnel)

        def closed():
            identity.tunnels.discard(tunnel)
            if not identity.tunnels:
                ended, identity.unused = identity.unused, Ending()
                ended.end()
            self._drop(identity)

        tunnel.whenClosed.append(closed)

    def _drop(self, identity):
        if identity.pathGone and not identity.tunnels and identity in self.kept:
            self.kept.remove(identity)
        self._changed()

    # What the node asks

    @property
    def current(self):
        """The identity a new connection takes: that of the newest exit path, else L{pending}."""
        for identity in reversed(self.kept):
            if not identity.pathGone:
                return identity
        return self.pending

    @property
    def addresses(self):
        """The exit APs in use: L{current}'s first, then those of older paths with tunnels open."""
        current = self.current
        return [current.apAddress] + [identity.apAddress for identity in reversed(self.kept) if identity is not current]

    def whenUnused(self, path):
        """
        What a replaced exit path waits for before it closes
        (L{phantom.path.service.PathService.holdReplaced}): its tunnels keep their identity,
        and their path, until they close.

        @return: a Deferred that fires once no tunnel opened with C{path}'s identity is open, or
            C{None} if none is.
        """
        identity = self.ofPath(path)
        if identity is None or not identity.tunnels:
            return None
        return identity.unused.whenEnded()

    def ofAddress(self, apAddress):
        """@return: the L{ExitIdentity} of C{apAddress}, or C{None} if it is none of this node's in use."""
        for identity in [*self.kept, self.pending]:
            if identity.apAddress == apAddress:
                return identity
        return None

    def ofPath(self, path):
        """@return: the L{ExitIdentity} of C{path}, or C{None}."""
        for identity in self.kept:
            if identity.path is path:
                return identity
        return None

    def ofTunnel(self, tunnel):
        """@return: the L{ExitIdentity} C{tunnel} was opened with, or C{None} once it has closed."""
        for identity in self.kept + [self.pending]:
            if tunnel in identity.tunnels:
                return identity
        return None

    async def choose(self, source, exitPath):
        """
        The identity and exit path of a new outbound tunnel.

        @param source: the exit AP to open it from; C{None} for any exit path.
        @param exitPath: C{exitPath() -> Deferred} of one of this node's exit paths, built if it
            has none (L{phantom.path.service.PathService.exitPath}); C{None} for a node that is
            its own exit node, whose tunnels take L{current} and no path.
        @return: C{(identity, path)}.
        @raise TunnelFailed: C{source} is not an exit AP of this node, or its exit path is gone.
        """
        if exitPath is None:
            identity = self.current if source is None else self.ofAddress(source)
            if identity is None:
                raise TunnelFailed(f"{formatAddress(source)} is no exit AP-address of this node")
            return identity, None
        if source is None:
            path = await exitPath()
            identity = self.ofPath(path)
            if identity is None:
                raise TunnelFailed("an exit path that has no client identity")
            return identity, path
        identity = self.ofAddress(source)
        if identity is None:
            raise TunnelFailed(f"{formatAddress(source)} is no exit AP-address of this node")
        if identity.path is None:
            # The pending identity: the exit path built next (now, if there is none) takes it.
            await exitPath()
        if identity.path is None or identity.pathGone:
            raise TunnelFailed(f"{formatAddress(source)} has no exit path (it is gone, or another was built)")
        return identity, identity.path
