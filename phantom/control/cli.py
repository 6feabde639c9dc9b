"""
``phantomctl``: ask a running node what it is doing, through its control socket.

    phantomctl [--node DIR] status [--json]
    phantomctl [--node DIR] peers [--json]
    phantomctl [--node DIR] dht put KEY VALUE [--ttl S] [--replication N] [--json]
    phantomctl [--node DIR] dht get KEY [--json]
    phantomctl [--node DIR] path build --kind exit|entry [--x N --y N] [--json]
    phantomctl [--node DIR] path list [--json]
    phantomctl [--node DIR] route lookup AP [--json]
    phantomctl [--node DIR] tunnel open AP [--json]
    phantomctl [--node DIR] tunnel list [--json]
    phantomctl [--node DIR] tun status [--json]

A KEY of 64 hex digits is used as it is; any other text is hashed with SHA-256 to 32 bytes.

Each subcommand is an C{Options} class with C{ask(client)} (the question, through a
L{ControlClient}, and the answer as C{--json} prints it) and C{render(result)} (the text for
people). Other programs ask nodes with L{ControlClient} directly.
"""

import getopt
import hashlib
import os

from twisted.python import usage

from phantom.control.client import ControlClient, ControlError
from phantom.control.runner import runCommandLine


class _Subcommand(usage.Options):
    optFlags = [["json", "j", "Print the result as one JSON object."]]

    def parseOptions(self, options=None):
        # Options may follow the arguments (``dht put KEY VALUE --ttl 60``), as in GNU tools.
        try:
            found, arguments = getopt.gnu_getopt(options or [], self.shortOpt, self.longOpt)
        except getopt.GetoptError as e:
            raise usage.UsageError(str(e)) from e
        reordered = [item for option, value in found for item in ((option, value) if value else (option,))]
        super().parseOptions(reordered + ["--"] + arguments)

    async def run(self, reactor):
        """Ask the node; the result as JSON or as text, for L{runCommandLine} to print."""
        result = await self.ask(ControlClient.forNode(reactor, self.parent["node"]))
        return result if self["json"] else self.render(result)

    async def ask(self, client):
        """
        @param client: a L{ControlClient} of the node.
        @return: the result as a JSON-ready dict.
        """
        raise NotImplementedError

    def render(self, result):
        """@return: the result as text for people."""
        raise NotImplementedError


def formatUptime(seconds):
    """C{1d 2h 3m 4s}-style uptime."""
    seconds = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    parts.append(f"{seconds}s")
    return " ".join(parts)


def describeKept(kept):
    """C{1 of 1 built}, with what is being built and the last error while short."""
    text = f"{kept['built']} of {kept['wanted']} built"
    if kept["building"]:
        text += f", {kept['building']} building"
    if kept["failures"]:
        text += f"; {kept['failures']} failed, last: {kept['last_error']}"
    return text


class StatusOptions(_Subcommand):
    """``phantomctl status``: node id, addresses, uptime, open links and peers."""

    synopsis = "[--json]"

    async def ask(self, client):
        result = await client.status()
        return {**result, "uptime": round(result["uptime"], 3)}

    def render(self, result):
        lines = [
            f"node       {result['node_id']}",
            f"AP-address {result['ap_address']}",
            f"listening  {result['listening']}",
            f"DHT API    {result['api']}",
            f"uptime     {formatUptime(result['uptime'])}",
            f"links      {result['links']} open ({result['connections']} connections)",
        ]
        lines += [f"{kept['kind'] + ' path':<11}{describeKept(kept)}" for kept in result["kept_paths"]]
        lines.append(f"peers      {len(result['peers'])}")
        for peer in result["peers"]:
            lines.append(
                f"  {peer['node_id']}  {peer['address']}  in {peer['inbound']} out {peer['outbound']}"
            )
        return "\n".join(lines)


def parseKey(text):
    """The 32-byte key C{text} names: 64 hex digits as they are, any other text's SHA-256."""
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    return hashlib.sha256(text.encode()).digest()


def describeValue(value):
    """A value for JSON: its text where it is UTF-8, and always its hex."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"value": text, "value_hex": value.hex()}


class PeersOptions(_Subcommand):
    """``phantomctl peers``: the routing table."""

    synopsis = "[--json]"

    async def ask(self, client):
        return await client.peers()

    def render(self, result):
        lookups = result["lookups"]
        perLookup = result["lookup_requests"] / lookups if lookups else 0
        lines = [
            f"contacts   {len(result['contacts'])} in {len(result['buckets'])} buckets",
            f"lookups    {lookups} ({perLookup:.1f} requests each)",
            f"stored     {result['stored']} records",
            "bucket  size  replacements  idle",
        ]
        for bucket in result["buckets"]:
            lines.append(f"{bucket['index']:>6}  {bucket['size']:>4}  {bucket['replacements']:>12}  {formatUptime(bucket['idle'])}")
        for contact in result["contacts"]:
            lines.append(f"  {contact['node_id']}  {contact['address']}")
        return "\n".join(lines)


class DhtPutOptions(_Subcommand):
    """``phantomctl dht put KEY VALUE``: store a value as a module-API PUT does."""

    synopsis = "KEY VALUE [--ttl S] [--replication N] [--json]"
    optParameters = [
        ["ttl", "t", 3600, "Seconds the value should live (clamped by the node).", int],
        ["replication", "r", 20, "On how many nodes to store it (a hint).", int],
    ]

    def parseArgs(self, key, value):
        self["key"] = parseKey(key)
        self["value"] = value.encode()
        if not 0 < len(self["value"]) <= 65495:
            raise usage.UsageError("a value is 1 to 65495 bytes")

    async def ask(self, client):
        replicas = await client.dhtPut(self["key"], self["value"], self["ttl"], self["replication"])
        return {"key": self["key"].hex(), "stored": True, "replicas": replicas}

    def render(self, result):
        return f"stored under {result['key']} here and on {result['replicas']} other nodes"


class DhtGetOptions(_Subcommand):
    """``phantomctl dht get KEY``: find a value as a module-API GET does."""

    synopsis = "KEY [--json]"

    def parseArgs(self, key):
        self["key"] = parseKey(key)

    async def ask(self, client):
        value = await client.dhtGet(self["key"])
        return {"key": self["key"].hex(), "found": value is not None, **(describeValue(value) if value is not None else {})}

    def render(self, result):
        if not result["found"]:
            return f"nothing found under {result['key']}"
        return result["value"] if result["value"] is not None else result["value_hex"]


class PathBuildOptions(_Subcommand):
    """``phantomctl path build``: build a routing path and say how long each phase took."""

    synopsis = "--kind exit|entry [--x N] [--y N] [--json]"
    optParameters = [
        ["kind", "k", "exit", "exit or entry."],
        ["x", None, 3, "X-nodes in the path.", int],
        ["y", None, 12, "Y-nodes in the path.", int],
    ]

    def postOptions(self):
        if self["kind"] not in ("exit", "entry"):
            raise usage.UsageError("--kind is exit or entry")

    async def ask(self, client):
        path = await client.pathBuild(self["kind"], self["x"], self["y"])
        return {**path, "phases": {name: round(seconds, 4) for name, seconds in path["phases"].items()}, "seconds": round(path["seconds"], 4)}

    def render(self, result):
        lines = [f"built an {result['kind']} path in {result['seconds']:.3f} s"]
        lines += [f"  {name:8} {seconds:.3f} s" for name, seconds in result["phases"].items()]
        if result["ap_address"]:
            lines.append(f"AP-address {result['ap_address']}")
        return "\n".join(lines)


class PathListOptions(_Subcommand):
    """``phantomctl path list``: the paths this node owns."""

    synopsis = "[--json]"

    async def ask(self, client):
        return {"paths": await client.pathList()}

    def render(self, result):
        if not result["paths"]:
            return "no paths"
        return "\n".join(
            f"{p['kind']:5}  {p['length']} X-nodes  x0 {p['x0']}  {formatUptime(p['age'])} old  {p['ap_address']}" for p in result["paths"]
        )


class RouteLookupOptions(_Subcommand):
    """``phantomctl route lookup AP``: the verified routing entry of an AP-address."""

    synopsis = "AP [--json]"

    def parseArgs(self, apAddress):
        self["ap_address"] = apAddress

    async def ask(self, client):
        return {**await client.routeLookup(self["ap_address"]), "ap_address": self["ap_address"]}

    def render(self, result):
        if not result["found"]:
            return f"no routing entry for {result['ap_address']}"
        lines = [f"{result['ap_address']}  version {result['sequence']}, expires at {result['expires']}"]
        lines += [f"  entry node {n['node_id']}  {n['address']}" for n in result["entry_nodes"]]
        return "\n".join(lines)


class TunnelOpenOptions(_Subcommand):
    """``phantomctl tunnel open AP``: open a tunnel with end-to-end TLS, time an echo, close it."""

    synopsis = "AP [--json]"

    def parseArgs(self, apAddress):
        self["ap_address"] = apAddress

    async def ask(self, client):
        opened = await client.tunnelOpen(self["ap_address"])
        return {**opened, "open_seconds": round(opened["open_seconds"], 4), "rtt_seconds": round(opened["rtt_seconds"], 4)}

    def render(self, result):
        rtt = f"{result['rtt_seconds'] * 1000:.1f} ms" if result["rtt_seconds"] >= 0 else "no echo"
        return f"tunnel to {result['peer']} open in {result['open_seconds'] * 1000:.0f} ms (end-to-end TLS verified); 1 KiB round trip {rtt}"


class TunnelListOptions(_Subcommand):
    """``phantomctl tunnel list``: the tunnels this node owns an end of."""

    synopsis = "[--json]"

    async def ask(self, client):
        return await client.tunnelList()

    def render(self, result):
        lines = [f"AP-address {result['ap_address']}; carrying {result['carried']} tunnels for others"]
        lines += [
            f"{t['direction']:3}  {t['peer'] or 'peer not yet known'}  {formatUptime(t['age'])} old  {t['sent']} B sent  {t['received']} B received"
            for t in result["tunnels"]
        ]
        return "\n".join(lines)


class _Group(usage.Options):
    """A command with subcommands of its own (``phantomctl dht put``)."""

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError(" or ".join(name for name, _, _, _ in self.subCommands) + " is needed")
        self["node"] = self.parent["node"]

    async def run(self, reactor):
        return await self.subOptions.run(reactor)


class PathOptions(_Group):
    """``phantomctl path``: routing paths."""

    subCommands = [
        ["build", None, PathBuildOptions, "Build a routing path."],
        ["list", None, PathListOptions, "List the paths this node owns."],
    ]


class RouteOptions(_Group):
    """``phantomctl route``: routing entries."""

    subCommands = [["lookup", None, RouteLookupOptions, "Look up an AP-address's routing entry."]]


class TunStatusOptions(_Subcommand):
    """``phantomctl tun status``: the tun device, and packets and drops per direction."""

    synopsis = "[--json]"

    async def ask(self, client):
        return await client.tunStatus()

    def render(self, result):
        if not result["device"]:
            return f"no tun device (start the node with --tun NAME); AP-address {result['ap_address']}"
        lines = [f"{result['device']}: {result['ap_address']}/128, fd00::/8 routed through it; {result['tunnels']} packet tunnels open"]
        lines += [f"  {event:45} {packets}" for event, packets in result["counts"].items()]
        return "\n".join(lines)


class TunOptions(_Group):
    """``phantomctl tun``: the tun device."""

    subCommands = [["status", None, TunStatusOptions, "Show the device, and packets and drops per direction."]]


class TunnelOptions(_Group):
    """``phantomctl tunnel``: routing tunnels."""

    subCommands = [
        ["open", None, TunnelOpenOptions, "Open a tunnel to an AP-address and time an echo through it."],
        ["list", None, TunnelListOptions, "List the tunnels this node owns an end of."],
    ]


class DhtOptions(_Group):
    """``phantomctl dht``: the network database's module-API operations."""

    subCommands = [
        ["put", None, DhtPutOptions, "Store a value."],
        ["get", None, DhtGetOptions, "Find a value."],
    ]


class Options(usage.Options):
    """The options of ``phantomctl``."""

    synopsis = "[--node DIR] COMMAND [--json]"
    optParameters = [
        [
            "node",
            "n",
            os.environ.get("PHANTOM_NODE", os.path.expanduser("~/.phantom")),
            "The node's data directory (its control socket is there) [default: $PHANTOM_NODE or ~/.phantom].",
        ]
    ]
    subCommands = [
        ["status", None, StatusOptions, "Show the node's id, addresses, uptime, links and peers."],
        ["peers", None, PeersOptions, "Show the routing table."],
        ["dht", None, DhtOptions, "Store or find a value in the network database."],
        ["path", None, PathOptions, "Build or list routing paths."],
        ["route", None, RouteOptions, "Look up routing entries."],
        ["tunnel", None, TunnelOptions, "Open or list routing tunnels."],
        ["tun", None, TunOptions, "Show the tun device."],
    ]

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError("a command is needed")


def main(argv=None):
    """Entry point of ``phantomctl``."""
    runCommandLine("phantomctl", Options(), argv, (ControlError,))
