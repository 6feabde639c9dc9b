"""
``twistd phantom``: the command-line options and the service they make.

    twistd -n phantom --port 7402 --data-dir DIR [--listen-address ADDR] [--advertise-address HOST[:PORT]]
                      [--bootstrap HOST:PORT,...] [--api-address HOST:PORT]
                      [--serve echo|none|HOST:PORT] [--forward HOST:PORT=AP]
                      [--own-exit] [--own-entry] [--tun NAME] [--config FILE]
"""

from twisted.python import usage

from phantom.config import resolveConfig
from phantom.errors import ConfigError
from phantom.identity import IdentityError


class Options(usage.Options):
    """Options of ``twistd phantom``; anything not given comes from the config file or defaults."""

    synopsis = "[--port PORT] [--data-dir DIR] [--listen-address ADDR] [--advertise-address HOST[:PORT]] [--bootstrap HOST:PORT,...] [--api-address HOST:PORT] [--serve echo|none|HOST:PORT] [--forward HOST:PORT=AP] [--own-exit] [--own-entry] [--tun NAME] [--config FILE]"
    longdesc = (
        "Run a node of the Phantom anonymity network. All node-to-node traffic uses one TLS port. "
        "--port takes a port number (listening on --listen-address) or a tcp:/tcp6: endpoint string."
    )
    optFlags = [
        ["own-exit", None, "Open tunnels without exit paths, asking entry nodes directly (not anonymous, paper 6.3)."],
        ["own-entry", None, "Publish this node as the entry node of its own AP-address (not anonymous, paper 6.3)."],
    ]
    optParameters = [
        ["port", "p", None, "The TLS port: a number, or a tcp:/tcp6: endpoint string [default: 7402]."],
        ["data-dir", "d", None, "Where the node keeps its keys and state [default: ~/.phantom]."],
        ["listen-address", "l", None, "The IP address to listen on and reach peers from [default: every IPv6 and IPv4 address]."],
        ["advertise-address", None, None, "HOST[:PORT] other nodes are told to reach this node at, if not the address it binds (NAT, port forwarding)."],
        ["bootstrap", "b", None, "Comma-separated HOST:PORT or NODEID@HOST:PORT of nodes to join through; HOST may be a host name."],
        ["api-address", None, None, "HOST:PORT of the DHT module API [default: 127.0.0.1:7401]."],
        ["serve", None, None, "Inbound tunnels: echo, none, or HOST:PORT of a TCP service to pass them to [default: echo]; with --tun they carry packets."],
        ["forward", None, None, "Comma-separated HOST:PORT=AP: carry connections to a local port through tunnels to AP."],
        ["tun", None, None, "Carry this node's AP-address on a tun device of this name (needs CAP_NET_ADMIN)."],
        ["config", "c", None, "An INI file ([dht] p2p_address, api_address, ...); options here override it."],
    ]

    def postOptions(self):
        try:
            self["node"] = resolveConfig(
                dataDir=self["data-dir"],
                port=self["port"],
                listenAddress=self["listen-address"],
                advertiseAddress=self["advertise-address"],
                bootstrap=self["bootstrap"],
                apiAddress=self["api-address"],
                serve=self["serve"],
                forward=self["forward"],
                ownExit=True if self["own-exit"] else None,
                ownEntry=True if self["own-entry"] else None,
                tun=self["tun"],
                configFile=self["config"],
            )
        except ConfigError as e:
            raise usage.UsageError(str(e)) from e


def makeService(options, reactor=None):
    """
    @param options: parsed L{Options}.
    @param reactor: the reactor to use; the global one when not given.
    @return: the node, an C{IService}.
    """
    if reactor is None:
        from twisted.internet import reactor
    from phantom.node import PhantomNode

    try:
        return PhantomNode(options["node"], reactor)
    except IdentityError as e:
        raise SystemExit(f"phantom: {e}") from e
