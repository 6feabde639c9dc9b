"""
One relay of the bare TLS chain the tunnel benchmark (L{bench.tunnel}) measures its baseline on.

    python -m bench.relay --accept tcp|tls [--host 127.0.0.1]

A relay listens on a free port of C{--host}, accepting plain TCP or TLS as C{--accept} says,
and prints one JSON line on stdout: C{{"port": P, "node_id": HEX}} (its node id is that of a
fresh identity, L{phantom.identity.Identity.generate}, whose certificate it presents when it
accepts TLS). It then reads one JSON line on stdin, C{{"host": H, "port": P, "node_id": HEX or
null}}: where to carry each connection it accepts, over TLS pinned to that node id, or over
plain TCP when it is null; and prints C{{"ready": true}}. The relay runs until stdin is closed
(so it never outlives the benchmark that started it) or it gets SIGTERM.

What it does is what a node's C{--forward} and C{--serve} ports do
(L{phantom.tunnel.ports}), with a TLS connection in the place of a tunnel: each accepted
connection is paused, a connection to the next hop is made, and
C{twisted.protocols.portforward} shovels bytes both ways, each side the other's push
producer. TLS is the link layer's (L{phantom.link.tls.makeContext}: Ed25519 self-signed
certificates, TLS 1.3, mutual authentication, the next hop's node id pinned), over
C{TLSMemoryBIOFactory}, without the link layer's framing.
"""

import argparse
import json
import sys

from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory
from twisted.protocols import portforward
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.tls import TLSMemoryBIOFactory

from phantom.identity import Identity
from phantom.link.tls import ClientConnectionCreator, ServerConnectionCreator, makeContext

HOST = "127.0.0.1"


class RelayServer(portforward.ProxyServer):
    """An accepted connection, carried to the factory's next hop."""

    def connectionMade(self):
        self.transport.pauseProducing()
        client = self.clientProtocolFactory()
        client.setServer(self)
        self.factory.nextHop().connect(client).addErrback(lambda failure: self.transport.loseConnection())


class RelayFactory(Factory):
    """
    Makes a L{RelayServer} for each accepted connection.

    @ivar nextHop: a function of no arguments returning the client endpoint of the next hop.
    """

    protocol = RelayServer
    noisy = False

    def __init__(self, nextHop):
        self.nextHop = nextHop


class Control(LineOnlyReceiver):
    """Reads the next hop from stdin; stops the reactor when stdin closes."""

    delimiter = b"\n"

    def __init__(self, relay):
        self._relay = relay

    def lineReceived(self, line):
        self._relay.setNextHop(json.loads(line))
        self._relay.say({"ready": True})

    def connectionLost(self, reason):
        self._relay.stop()


class Relay:
    """
    The relay's state: its identity, TLS contexts and next hop.

    @param reactor: provides C{IReactorTCP}.
    @param acceptTLS: whether it accepts TLS (else plain TCP).
    """

    def __init__(self, reactor, acceptTLS, host):
        self._reactor = reactor
        self._acceptTLS = acceptTLS
        self._host = host
        self._identity = Identity.generate()
        self._clientContext = makeContext(self._identity, server=False)
        self._endpoint = None
        self._output = None

    def listen(self):
        """@return: a Deferred firing with the listening port."""
        factory = RelayFactory(lambda: self._endpoint)
        if self._acceptTLS:
            creator = ServerConnectionCreator(makeContext(self._identity, server=True))
            factory = TLSMemoryBIOFactory(creator, False, factory, clock=self._reactor)
            factory.noisy = False
        return TCP4ServerEndpoint(self._reactor, 0, interface=self._host).listen(factory)

    def setNextHop(self, hop):
        """@param hop: C{{"host", "port", "node_id"}}, the node id in hex or C{None} for plain TCP."""
        endpoint = TCP4ClientEndpoint(self._reactor, hop["host"], hop["port"])
        if hop["node_id"] is not None:
            endpoint = wrapClientTLS(ClientConnectionCreator(self._clientContext, bytes.fromhex(hop["node_id"])), endpoint)
        self._endpoint = endpoint

    def say(self, message):
        """Print one JSON line on stdout."""
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def stop(self):
        if self._reactor.running:
            self._reactor.stop()

    @property
    def nodeId(self):
        return self._identity.nodeId


def main(argv=None):
    """Run one relay; see the module's docstring."""
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accept", choices=("tcp", "tls"), required=True, help="what the relay accepts")
    parser.add_argument("--host", default=HOST, help=f"the address to listen on (default {HOST})")
    options = parser.parse_args(argv)

    from twisted.internet import reactor, stdio

    relay = Relay(reactor, options.accept == "tls", options.host)

    def listening(port):
        relay.say({"port": port.getHost().port, "node_id": relay.nodeId.hex()})
        stdio.StandardIO(Control(relay), reactor=reactor)

    def failed(failure):
        sys.stderr.write(f"relay: {failure.getErrorMessage()}\n")
        relay.stop()

    reactor.callWhenRunning(lambda: relay.listen().addCallbacks(listening, failed))
    reactor.run()


if __name__ == "__main__":
    main()
