"""
The network-namespace mode: every node a C{twistd phantom} daemon in a network namespace of its
own, with its own address on a bridge shared by the testnet and its own tun device
(C{phantom0}) carrying its AP-address. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).

Namespaces, bridge and veth pairs are made and removed over netlink (pyroute2). Names carry a
tag made from the testnet directory, so testnets in different directories never meet: the
switch's namespace C{phTAGsw} holds the bridge C{br0} and one end of every veth pair
(C{vI}); node I's namespace C{phTAGnIII} holds the other end (C{eth0}). The nodes' addresses
are in 10.199.0.0/16 on the bridge only; nothing is routed to or from the host.

The bridge lives in a namespace of its own, not in the one C{up} runs in, because the
firewall of that namespace sees bridged packets (with br_netfilter loaded, as on every host
that runs Docker, whose FORWARD policy is DROP): the switch's namespace has a firewall of
its own, empty, and the host's is never touched.

Run as C{python -m phantom.testnet.netns NAMESPACE PROGRAM ARGS...}, this module enters the
namespace and executes the program there: that is how the nodes are started.
"""

import hashlib
import ipaddress
import os
import sys

from phantom.address import formatAddress
from phantom.config import DEFAULT_PORT
from phantom.crypto import apAddressOf
from phantom.frontend.device import whyNoTunDevice
from phantom.identity import ROUTING_KEY
from phantom.testnet.interfaces import DEFAULT_TIMEOUT
from phantom.testnet.loopback import LoopbackTestnet
from phantom.testnet.manifest import Manifest, TestnetError, layOutNodes
from phantom.testnet.processes import STOP_TIMEOUT, twistdCommandLine

NETNS = "netns"
"""The mode name of L{NetnsTestnet}, as the manifest records it."""

SUBNET = ipaddress.IPv4Network("10.199.0.0/16")
TUN_DEVICE = "phantom0"
MAX_NODES = 250


def tagOf(directory):
    """The short tag in the names of a testnet's namespaces and links."""
    return hashlib.sha256(os.path.abspath(directory).encode()).hexdigest()[:6]


def namespaceOf(manifest, node):
    """The network namespace node C{node} runs in."""
    return f"ph{tagOf(manifest.directory)}n{node.index:03d}"


def switchNamespaceOf(manifest):
    """The network namespace the testnet's bridge lives in."""
    return f"ph{tagOf(manifest.directory)}sw"


def apAddressOfNode(node):
    """The AP-address of a node's routing key, read from its data directory; C{None} before it made one."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        with open(os.path.join(node.dataDir, ROUTING_KEY), "rb") as f:
            key = load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError):
        return None
    return formatAddress(apAddressOf(key.public_key()))


def whyNotAvailable():
    """@return: why this machine cannot run a netns testnet, or C{None} if it can."""
    why = whyNoTunDevice()
    return f"the netns mode {why}" if why is not None else None


def planNetns(directory, count, port=DEFAULT_PORT):
    """
    Lay out a netns testnet; nothing is written or started.

    @raise TestnetError: C{count} or C{port} cannot be used.
    """
    if not 1 <= count <= MAX_NODES:
        raise TestnetError(f"a netns testnet has 1 to {MAX_NODES} nodes, not {count}")
    if not 1 < port < 65536:
        raise TestnetError(f"the port must be between 2 and 65535, not {port}")
    directory = os.path.abspath(directory)
    return Manifest(NETNS, directory, port, layOutNodes(directory, count, port, lambda index: str(SUBNET[index + 1])))


class NetnsTestnet(LoopbackTestnet):
    """
    A testnet of C{twistd phantom} daemons, each in its own network namespace with a tun device.
    Starting, waiting and stopping are the loopback mode's; the network around them is this one's.
    """

    mode = NETNS

    @classmethod
    def plan(cls, reactor, directory, count, port=DEFAULT_PORT):
        """@return: a new testnet of C{count} nodes in C{directory}, not yet started."""
        return cls(planNetns(directory, count, port), reactor)

    async def up(self, timeout=DEFAULT_TIMEOUT, progress=None):
        why = whyNotAvailable()
        if why is not None:
            raise TestnetError(why)
        self._refuseIfRunning()
        self.removeNetwork()
        (progress or (lambda text: None))(
            f"making {len(self.manifest.nodes)} network namespaces on a bridge in namespace {switchNamespaceOf(self.manifest)}"
        )
        try:
            self.makeNetwork()
        except Exception as e:
            self.removeNetwork()
            raise TestnetError(f"cannot make the testnet's network: {e}") from e
        await super().up(timeout, progress)

    async def down(self, timeout=STOP_TIMEOUT):
        try:
            return await super().down(timeout)
        finally:
            self.removeNetwork()

    def commandLine(self, node, twistd):
        return [sys.executable, "-m", "phantom.testnet.netns", namespaceOf(self.manifest, node)] + twistdCommandLine(node, twistd) + ["--tun", TUN_DEVICE]

    def describeNode(self, node):
        """What a node's status adds in this mode: its namespace and AP-address."""
        return {"namespace": namespaceOf(self.manifest, node), "ap_addresses": [apAddressOfNode(node)] if apAddressOfNode(node) else []}

    def makeNetwork(self):
        """Make the switch's namespace and bridge, and for every node its namespace, veth pair and address."""
        from pyroute2 import NetNS, netns

        switch = switchNamespaceOf(self.manifest)
        netns.create(switch)
        with NetNS(switch) as sw:
            [loopback] = sw.link_lookup(ifname="lo")
            sw.link("set", index=loopback, state="up")
            sw.link("add", ifname="br0", kind="bridge")
            [bridge] = sw.link_lookup(ifname="br0")
            sw.link("set", index=bridge, state="up")
            for node in self.manifest.nodes:
                namespace = namespaceOf(self.manifest, node)
                netns.create(namespace)
                port, inside = f"v{node.index}", f"p{node.index}"
                sw.link("add", ifname=port, kind="veth", peer=inside)
                [portIndex] = sw.link_lookup(ifname=port)
                [insideIndex] = sw.link_lookup(ifname=inside)
                sw.link("set", index=portIndex, master=bridge, state="up")
                sw.link("set", index=insideIndex, net_ns_fd=namespace)
                with NetNS(namespace) as ns:
                    [loopback] = ns.link_lookup(ifname="lo")
                    ns.link("set", index=loopback, state="up")
                    [index] = ns.link_lookup(ifname=inside)
                    ns.link("set", index=index, ifname="eth0")
                    ns.addr("add", index=index, address=node.address, prefixlen=SUBNET.prefixlen)
                    ns.link("set", index=index, state="up")

    def removeNetwork(self):
        """Remove every namespace and link of this testnet that exists (the veth pairs go with them)."""
        if whyNotAvailable() is not None:
            return
        from pyroute2 import IPRoute, netns

        tag = tagOf(self.manifest.directory)
        for namespace in netns.listnetns():
            if namespace.startswith(f"ph{tag}n") or namespace == switchNamespaceOf(self.manifest):
                netns.remove(namespace)
        # A bridge of this testnet in the namespace C{up} ran in: left by an older version.
        with IPRoute() as ip:
            for index in ip.link_lookup(ifname=f"phbr{tag}"):
                ip.link("del", index=index)


def enterAndRun(argv):
    """C{NAMESPACE PROGRAM ARGS...}: enter the network namespace, then become the program."""
    from pyroute2 import netns

    namespace, program = argv[0], argv[1:]
    netns.setns(namespace)
    os.execv(program[0], program)


if __name__ == "__main__":
    enterAndRun(sys.argv[1:])
