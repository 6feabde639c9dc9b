"""
What a node answers on its control socket: the responses of L{phantom.control.commands}, made
from what an L{IControlledNode<phantom.control.interfaces.IControlledNode>} tells.

Each function returns the response as a dict of the command's fields; addresses and ids are
text, ages seconds on the node's clock.
"""

from phantom.address import describePeer, formatAddress, formatHostPort

NO_ADDRESS = bytes(16)
"""The AP-address of a path that has none (an exit path)."""


def apText(apAddress):
    """@return: the AP-address C{apAddress} as text, empty for none."""
    return formatAddress(apAddress) if apAddress and apAddress != NO_ADDRESS else ""


def uptime(node):
    """@return: seconds since C{node} was started, 0 before."""
    return node.reactor.seconds() - node.startedAt if node.startedAt is not None else 0.0


def peers(node):
    """
    The nodes C{node} knows: the contacts of its routing table and the nodes it has links with,
    each with its address and open links in each direction, sorted by node id.
    """
    known = {
        contact.nodeId: {"node_id": contact.nodeId.hex(), "address": formatHostPort(contact.host, contact.port), "inbound": 0, "outbound": 0}
        for contact in node.routingTable()
    }
    for peer in node.linkedPeers():
        entry = known.setdefault(peer["nodeId"], {"node_id": peer["nodeId"].hex(), "address": peer["address"]})
        entry.update(inbound=peer["inbound"], outbound=peer["outbound"])
    return [known[nodeId] for nodeId in sorted(known)]


def status(node):
    """The response of L{Status<phantom.control.commands.Status>}."""
    links, connections = node.linkCounts()
    return {
        "node_id": node.nodeId.hex(),
        "ap_address": apText(node.apAddress),
        "kept_paths": node.pathStates(),
        "listening": node.address or "",
        "api": node.apiAddress or "",
        "uptime": uptime(node),
        "links": links,
        "connections": connections,
        "peers": peers(node),
        "exit_addresses": exitAddresses(node),
    }


def exitAddresses(node):
    """@return: the exit APs C{node} connects out from, as text: the current one first."""
    return [formatAddress(address) for address in node.exitAddresses()]


def routing(node):
    """The response of L{Peers<phantom.control.commands.Peers>}: the routing table."""
    now = node.reactor.seconds()
    lookups, requests = node.lookupCounts()
    return {
        "contacts": peers(node),
        "buckets": [
            {"index": b["index"], "size": b["size"], "replacements": b["replacements"], "idle": now - b["lastTouched"]}
            for b in node.routingTable().summary()
        ],
        "lookups": lookups,
        "lookup_requests": requests,
        "stored": node.storedCount(),
    }


def builtPath(path):
    """The response of L{PathBuild<phantom.control.commands.PathBuild>} for the C{path} built."""
    return {
        "kind": str(path.kind),
        "ap_address": apText(path.apAddress),
        "nodes": [record.nodeId.hex() for record in path.nodes],
        "phases": [{"name": name, "seconds": seconds} for name, seconds in path.phases.items()],
        "seconds": sum(path.phases.values()),
    }


def pathList(node):
    """The response of L{PathList<phantom.control.commands.PathList>}: the paths C{node} owns."""
    now = node.reactor.seconds()
    return {
        "paths": [
            {
                "kind": str(path.kind),
                "ap_address": apText(path.apAddress),
                "x0": describePeer(path.link.peer),
                "age": now - path.builtAt,
                "length": len(path.nodes),
                "nodes": [record.nodeId.hex() for record in path.nodes],
            }
            for path in node.ownedPaths()
        ]
    }


def route(record):
    """The response of L{RouteLookup<phantom.control.commands.RouteLookup>} for a routing entry, or C{None}."""
    if record is None:
        return {"found": False, "sequence": 0, "expires": 0, "entry_nodes": []}
    return {
        "found": True,
        "sequence": record.sequence,
        "expires": record.expires,
        "entry_nodes": [{"node_id": n.nodeId.hex(), "address": formatHostPort(n.host, n.port)} for n in record.entryNodes],
    }


def tunnelList(node):
    """The response of L{TunnelList<phantom.control.commands.TunnelList>}: the tunnels C{node} owns an end of."""
    now = node.reactor.seconds()
    return {
        "ap_address": formatAddress(node.apAddress),
        "tunnels": [
            {
                "direction": "out" if tunnel.outbound else "in",
                "peer": apText(tunnel.getPeer().apAddress),
                "age": now - tunnel.openedAt,
                "sent": tunnel.bytesSent,
                "received": tunnel.bytesReceived,
            }
            for tunnel in node.ownedTunnels()
        ],
        "carried": node.carriedCount(),
        "exit_addresses": exitAddresses(node),
    }


def tunStatus(node):
    """The response of L{TunStatus<phantom.control.commands.TunStatus>}: C{node}'s tun device."""
    if node.router is None:
        return {"device": "", "ap_address": formatAddress(node.apAddress), "exit_addresses": exitAddresses(node), "tunnels": 0, "counts": []}
    return {
        "device": node.device.name,
        "ap_address": formatAddress(node.apAddress),
        "exit_addresses": exitAddresses(node),
        "tunnels": len(node.router.tunnels),
        "counts": [{"event": event, "packets": count} for event, count in sorted(node.router.counts.items())],
    }
