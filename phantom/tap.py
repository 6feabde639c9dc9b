"""
``twistd phantom``: the command-line options and the service they make.

    twistd -n phantom --port 7402 --data-dir DIR [--listen-address ADDR] [--advertise-address HOST[:PORT]]
                      [--bootstrap HOST:PORT,...] [--api-address HOST:PORT] [--metrics-address HOST:PORT]
                      [--serve echo|none|HOST:PORT|ENDPOINT] [--forward LISTEN=AP]
                      [--own-exit] [--own-entry] [--tun NAME] [--config FILE]
                      [--print-config] [--version]
"""

import sys

from twisted.python import usage

from phantom.config import formatConfig, resolveConfig
from phantom.errors import ConfigError
from phantom.identity import IdentityError
from phantom.logs import useForTwistd
from phantom.startup import StartupError, checkDataDir, printStartupErrorsInOneLine
from phantom.version import versionLine


class Options(usage.Options):
    """Options of ``twistd phantom``; anything not given comes from the config file or defaults."""

    synopsis = "[--port PORT] [--data-dir DIR] [--listen-address ADDR] [--advertise-address HOST[:PORT]] [--bootstrap HOST:PORT,...] [--api-address HOST:PORT] [--metrics-address HOST:PORT] [--serve echo|none|HOST:PORT|ENDPOINT] [--forward LISTEN=AP] [--own-exit] [--own-entry] [--tun NAME] [--config FILE] [--print-config] [--version]"
    longdesc = (
        "Run a node of the Phantom anonymity network. All node-to-node traffic uses one TLS port. "
        "--port takes a port number (listening on --listen-address) or a tcp:/tcp6: endpoint string."
    )
    optFlags = [
        ["own-exit", None, "Open tunnels without exit paths, asking entry nodes directly (not anonymous, paper 6.3)."],
        ["own-entry", None, "Publish this node as the entry node of its own AP-address (not anonymous, paper 6.3)."],
        ["print-config", None, "Print the effective configuration, each value with where it came from, and exit."],
    ]
    optParameters = [
        ["port", "p", None, "The TLS port: a number, or a tcp:/tcp6: endpoint string [default: 7402]."],
        ["data-dir", "d", None, "Where the node keeps its keys and state [default: ~/.phantom]."],
        ["listen-address", "l", None, "The IP address to listen on and reach peers from [default: every IPv6 and IPv4 address]."],
        ["advertise-address", None, None, "HOST[:PORT] other nodes are told to reach this node at, if not the address it binds (NAT, port forwarding)."],
        ["bootstrap", "b", None, "Comma-separated HOST:PORT or NODEID@HOST:PORT of nodes to join through; HOST may be a host name."],
        ["api-address", None, None, "HOST:PORT of the DHT module API [default: none, it does not listen]."],
        ["metrics-address", None, None, "HOST:PORT to serve Prometheus metrics on over HTTP [default: none]."],
        ["serve", None, None, "Inbound tunnels: echo, none, HOST:PORT of a TCP service to pass them to, or a client endpoint string (unix:/run/app.sock) [default: echo]; with --tun they carry packets."],
        ["forward", None, None, "Comma-separated LISTEN=AP, LISTEN a HOST:PORT or a server endpoint string (tcp:8080:interface=127.0.0.1): carry connections to it through tunnels to AP."],
        ["tun", None, None, "Carry this node's AP-address on a tun device of this name (needs CAP_NET_ADMIN)."],
        ["config", "c", None, "An INI file ([dht] p2p_address, api_address, ...); options here override it."],
    ]

    def opt_version(self):
        """Print Phantom's version and the protocol version, and exit."""
        print(versionLine("twistd phantom"))
        raise SystemExit(0)

    def postOptions(self):
        try:
            self["node"] = resolveConfig(
                dataDir=self["data-dir"],
                port=self["port"],
                listenAddress=self["listen-address"],
                advertiseAddress=self["advertise-address"],
                bootstrap=self["bootstrap"],
                apiAddress=self["api-address"],
                metricsAddress=self["metrics-address"],
                serve=self["serve"],
                forward=self["forward"],
                ownExit=True if self["own-exit"] else None,
                ownEntry=True if self["own-entry"] else None,
                tun=self["tun"],
                configFile=self["config"],
            )
        except ConfigError as e:
            raise SystemExit(f"phantom: {e}") from None
        if self["print-config"]:
            sys.stdout.write(formatConfig(self["node"]))
            raise SystemExit(0)
        twistd = getattr(self, "parent", None)
        if twistd is None:
            return
        printStartupErrorsInOneLine()
        if twistd.get("logger") is None:
            # twistd's --logger names a factory taking no arguments: it finds the settings here.
            useForTwistd(self["node"], twistd)
            twistd["logger"] = "phantom.logs.twistdObserver"


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
        checkDataDir(options["node"].dataDir)
        return PhantomNode(options["node"], reactor)
    except (IdentityError, StartupError) as e:
        raise SystemExit(f"phantom: {e}") from None
