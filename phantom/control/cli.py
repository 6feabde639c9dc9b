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
import ipaddress
import os
import sys
from datetime import datetime, timezone

from twisted.python import usage

from phantom.control.runner import printOrQuit, runCommandLine
from phantom.version import versionLine

# The client and the runner load Twisted's reactor and AMP: imported where they are used, so
# that ``phantomctl status`` (L{quickStatus}) and ``--help`` run without them.

PROGRAM = "phantomctl"
NODE_OPTION = "[--node DIR]"


def refuseNonAp(text):
    """@return: C{text}, an AP-address. @raise usage.UsageError: it is not one (fd00::/8), so nothing is sent."""
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise usage.UsageError(f"{text!r} is not an AP-address (an IPv6 address in fd00::/8)") from None
    if address.packed[0] != 0xFD:
        raise usage.UsageError(f"{text} is not an AP-address (fd00::/8): Phantom reaches AP-addresses only")
    return text


def isoTime(epochSeconds):
    """@return: C{epochSeconds} as an ISO 8601 UTC time, to the second."""
    return datetime.fromtimestamp(epochSeconds, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Common:
    """C{-h} as C{--help}, and Phantom's C{--version}, on every command."""

    def opt_help(self):
        """Display this help and exit."""
        printOrQuit(str(self))
        raise SystemExit(0)

    opt_h = opt_help

    def opt_version(self):
        """Print Phantom's version and the protocol version, and exit."""
        printOrQuit(versionLine(PROGRAM))
        raise SystemExit(0)


class _Help(_Common):
    """The usage line names the whole command."""

    def getSynopsis(self):
        return f"Usage: {PROGRAM} {NODE_OPTION} {self.command} {self.synopsis}".rstrip()


class _Subcommand(_Help, usage.Options):
    optFlags = [["json", "j", "Print the result as one JSON object."]]
    command = ""

    def parseOptions(self, options=None):
        # Options may follow the arguments (``dht put KEY VALUE --ttl 60``), as in GNU tools.
        try:
            found, arguments = getopt.gnu_getopt(options or [], self.shortOpt, self.longOpt)
        except getopt.GetoptError as e:
            raise usage.UsageError(str(e)) from e
        reordered = [item for option, value in found for item in ((option, value) if value else (option,))]
        super().parseOptions(reordered + ["--"] + arguments)

    async def run(self, reactor):
        """
        Ask the node; the result as JSON or as text, for L{runCommandLine} to print, and the
        exit code: 1 when the answer is that nothing was found.
        """
        from phantom.control.client import ControlClient

        result = await self.ask(ControlClient.forNode(reactor, self.parent["node"]))
        return (result if self["json"] else self.render(result)), (1 if result.get("found") is False else 0)

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

    command = "status"
    synopsis = "[--json]"

    async def ask(self, client):
        result = await client.status()
        return {**result, "uptime": round(result["uptime"], 3)}

    def render(self, result):
        lines = [
            f"node       {result['node_id']}",
            f"AP-address {result['ap_address']}",
            f"listening  {result['listening']}",
            f"DHT API    {result['api'] or 'not listening (no --api-address)'}",
            f"uptime     {formatUptime(result['uptime'])}",
            f"links      {result['links']} open ({result['connections']} connections)",
        ]
        exits = result.get("exit_addresses", [])
        if exits:
            lines.insert(2, f"exit APs   {', '.join(exits)} (connects out from the first; never published)")
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

    command = "peers"
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

    command = "dht put"
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
        outcome = await client.dhtPut(self["key"], self["value"], self["ttl"], self["replication"])
        replicas = int(outcome)
        return {"key": self["key"].hex(), "stored": outcome.here or replicas > 0, "here": outcome.here, "replicas": replicas}

    def render(self, result):
        if result["here"]:
            return f"stored under {result['key']} here and on {result['replicas']} other nodes"
        if result["replicas"]:
            return f"stored under {result['key']} on {result['replicas']} other nodes; not here: this node's store is full"
        return f"not stored under {result['key']}: this node's store is full and no other node took it"


class DhtGetOptions(_Subcommand):
    """``phantomctl dht get KEY``: find a value as a module-API GET does."""

    command = "dht get"
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

    command = "path build"
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

    command = "path list"
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

    command = "route lookup"
    synopsis = "AP [--json]"

    def parseArgs(self, apAddress):
        self["ap_address"] = refuseNonAp(apAddress)

    async def ask(self, client):
        return {**await client.routeLookup(self["ap_address"]), "ap_address": self["ap_address"]}

    def render(self, result):
        if not result["found"]:
            return f"no routing entry for {result['ap_address']}"
        lines = [f"{result['ap_address']}  version {result['sequence']}, expires at {isoTime(result['expires'])}"]
        lines += [f"  entry node {n['node_id']}  {n['address']}" for n in result["entry_nodes"]]
        return "\n".join(lines)


class TunnelOpenOptions(_Subcommand):
    """``phantomctl tunnel open AP``: open a tunnel with end-to-end TLS, time an echo, close it."""

    command = "tunnel open"
    synopsis = "AP [--json]"

    def parseArgs(self, apAddress):
        self["ap_address"] = refuseNonAp(apAddress)

    async def ask(self, client):
        opened = await client.tunnelOpen(self["ap_address"])
        return {**opened, "open_seconds": round(opened["open_seconds"], 4), "rtt_seconds": round(opened["rtt_seconds"], 4)}

    def render(self, result):
        rtt = f"{result['rtt_seconds'] * 1000:.1f} ms" if result["rtt_seconds"] >= 0 else "no echo"
        return f"tunnel to {result['peer']} open in {result['open_seconds'] * 1000:.0f} ms (end-to-end TLS verified); 1 KiB round trip {rtt}"


class TunnelListOptions(_Subcommand):
    """``phantomctl tunnel list``: the tunnels this node owns an end of."""

    command = "tunnel list"
    synopsis = "[--json]"

    async def ask(self, client):
        return await client.tunnelList()

    def render(self, result):
        exits = "".join(f", exit AP {address}" for address in result["exit_addresses"][:1])
        lines = [f"AP-address {result['ap_address']}{exits}; carrying {result['carried']} tunnels for others"]
        lines += [
            f"{t['direction']:3}  {t['peer'] or 'peer not yet known'}  {formatUptime(t['age'])} old  {t['sent']} B sent  {t['received']} B received"
            for t in result["tunnels"]
        ]
        return "\n".join(lines)


class _Group(_Help, usage.Options):
    """A command with subcommands of its own (``phantomctl dht put``)."""

    synopsis = "COMMAND [--json]"

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError(" or ".join(name for name, _, _, _ in self.subCommands) + " is needed")
        self["node"] = self.parent["node"]

    async def run(self, reactor):
        return await self.subOptions.run(reactor)


class PathOptions(_Group):
    """``phantomctl path``: routing paths."""

    command = "path"

    subCommands = [
        ["build", None, PathBuildOptions, "Build a routing path."],
        ["list", None, PathListOptions, "List the paths this node owns."],
    ]


class RouteOptions(_Group):
    """``phantomctl route``: routing entries."""

    command = "route"

    subCommands = [["lookup", None, RouteLookupOptions, "Look up an AP-address's routing entry."]]


class TunStatusOptions(_Subcommand):
    """``phantomctl tun status``: the tun device, and packets and drops per direction."""

    command = "tun status"
    synopsis = "[--json]"

    async def ask(self, client):
        return await client.tunStatus()

    def render(self, result):
        if not result["device"]:
            return f"no tun device (start the node with --tun NAME); AP-address {result['ap_address']}"
        lines = [f"{result['device']}: {result['ap_address']}/128, fd00::/8 routed through it; {result['tunnels']} packet tunnels open"]
        lines += [f"  exit AP {address}/128" + (" (programs connect out from it)" if index == 0 else " (until its tunnels close)") for index, address in enumerate(result["exit_addresses"])]
        lines += [f"  {event:45} {packets}" for event, packets in result["counts"].items()]
        return "\n".join(lines)


class TunOptions(_Group):
    """``phantomctl tun``: the tun device."""

    command = "tun"

    subCommands = [["status", None, TunStatusOptions, "Show the device, and packets and drops per direction."]]


class TunnelOptions(_Group):
    """``phantomctl tunnel``: routing tunnels."""

    command = "tunnel"

    subCommands = [
        ["open", None, TunnelOpenOptions, "Open a tunnel to an AP-address and time an echo through it."],
        ["list", None, TunnelListOptions, "List the tunnels this node owns an end of."],
    ]


class DhtOptions(_Group):
    """``phantomctl dht``: the network database's module-API operations."""

    command = "dht"

    subCommands = [
        ["put", None, DhtPutOptions, "Store a value."],
        ["get", None, DhtGetOptions, "Find a value."],
    ]


class Options(_Common, usage.Options):
    """The options of ``phantomctl``."""

    synopsis = f"Usage: {PROGRAM} {NODE_OPTION} COMMAND [ARGUMENTS] [--json]"
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


def quickStatusNode(argv):
    """
    @return: the data directory C{argv} asks the text status of (C{[--node DIR] status}), or
        C{None} for any other command line.
    """
    node = Options.optParameters[0][2]
    if argv[:1] in (["--node"], ["-n"]) and len(argv) == 3:
        node, argv = argv[1], argv[2:]
    elif len(argv) == 2 and argv[0].startswith("--node="):
        node, argv = argv[0].partition("=")[2], argv[1:]
    return node if argv == ["status"] else None


def quickStatus(node):
    """``phantomctl status`` without Twisted (L{phantom.control.quick}): @return: the exit code."""
    from phantom.control.quick import STATUS_TYPES, QuickError, ask

    try:
        result = ask(node, "Status", STATUS_TYPES)
    except QuickError as e:
        print(f"{PROGRAM}: {e}", file=sys.stderr)
        return 1
    printOrQuit(StatusOptions().render({**result, "uptime": round(result["uptime"], 3)}))
    return 0


def main(argv=None):
    """Entry point of ``phantomctl``."""
    argv = sys.argv[1:] if argv is None else argv
    node = quickStatusNode(argv)
    if node is not None:
        raise SystemExit(quickStatus(node))
    from phantom.control.client import ControlError

    runCommandLine(PROGRAM, Options(), argv, (ControlError,))
