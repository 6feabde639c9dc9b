"""
One frozen configuration object for a node: defaults, then the INI file, then the command line.

The INI file follows the VoidPhone style: a ``[dht]`` section with ``p2p_address`` (where the
node's one TLS port listens) and ``api_address`` (the DHT module API), keys before the first
section are global, ``;`` and ``#`` start inline comments::

    [dht]
    p2p_address = 127.0.0.1:7402
    api_address = 127.0.0.1:7401
    bootstrapper = 127.0.0.2:7402, 127.0.0.3:7402

    [phantom]
    data_dir = /var/lib/phantom

    [link]
    idle_timeout = 90

The ``[dht]`` and ``[link]`` sections may also set any field of L{DhtSettings} and
L{LinkLimits}, in snake case (``get_timeout = 10``, ``max_value_ttl = 43200``).
"""

import configparser
import ipaddress
import os
from dataclasses import dataclass, field, fields, replace

from phantom.address import AddressError, parseContacts, parseHostPort
from phantom.errors import ConfigError

DEFAULT_PORT = 7402
LISTEN_BACKLOG = 1024
"""Connections the kernel queues for the TLS port: a burst of connects must not be dropped."""
DEFAULT_API_ADDRESS = ("127.0.0.1", 7401)
WILDCARD_ADDRESSES = ("0.0.0.0", "::")


@dataclass(frozen=True)
class LinkLimits:
    """Limits every link enforces, in seconds, frames and bytes."""

    handshakeTimeout: float = 10.0
    """A TLS handshake must finish within this time."""
    openTimeout: float = 10.0
    """After the handshake, the OPEN frame must arrive within this time."""
    idleTimeout: float = 90.0
    """A link on which nothing arrives for this long is closed."""
    keepaliveInterval: float = 30.0
    """A link on which nothing was sent for this long sends a KEEPALIVE frame."""
    connectTimeout: float = 10.0
    """An outbound TCP connection must be established within this time."""
    maxFramesPerSecond: int = 50000
    """More frames than this from one peer within a second closes its link."""
    maxWriteBuffer: int = 262144
    """Bytes a link may hold that the kernel has not taken yet: above it the link stops reading
    (or, spliced into a tunnel, stops the link that feeds it) until they are sent."""
    drainTimeout: float = 60.0
    """A link whose peer takes none of what is held for it within this time is closed."""


@dataclass(frozen=True)
class DhtSettings:
    """Timing and limits of the network database, in seconds unless named otherwise."""

    rpcTimeout: float = 5.0
    """A DHT request waits this long for its reply."""
    getTimeout: float = 10.0
    """A module-API GET is answered within this time, with FAILURE if nothing was found."""
    maxValueTtl: int = 43200
    """Module-API values are kept at most this long, whatever TTL they ask for."""
    minReplication: int = 8
    """Values are stored on at least this many of the closest nodes, whatever replication they ask for."""
    refreshInterval: float = 3600.0
    """A bucket no lookup touched for this long is refreshed."""
    republishInterval: float = 3600.0
    """Stored records are sent again to the nodes closest to their keys this often."""
    nodeRecordInterval: float = 1800.0
    """The node publishes its own node record this often."""
    maintenanceInterval: float = 60.0
    """Expiry, idle links and the due refreshes and republishes are looked at this often."""
    idleLinkTimeout: float = 300.0
    """A DHT link that carried nothing for this long is closed."""
    maxStoreBytes: int = 64 * 1024 * 1024
    """The bytes of memory the records a node holds may take, each counted at what it costs."""
    maxStoreBytesPerPeer: int = 4 * 1024 * 1024
    """The bytes of memory the records one peer (node id) stored may take."""
    storeReserveBytes: int = 8 * 1024 * 1024
    """The bytes of the store only node records and routing entries the node is responsible for
    (it is among the k closest nodes it knows to their keys) may use: a store full of other
    records still takes them."""

    def __post_init__(self):
        if self.storeReserveBytes >= self.maxStoreBytes:
            raise ConfigError(f"store_reserve_bytes ({self.storeReserveBytes}) must be less than max_store_bytes ({self.maxStoreBytes})")


@dataclass(frozen=True)
class PathSettings:
    """How the node builds routing paths."""

    x: int = 3
    """X-nodes per path."""
    y: int = 12
    """Y-nodes per path."""
    roundTimeout: float = 10.0
    """A setup round that has not come back within this time has failed."""
    attempts: int = 3
    """Tries per path, each with other nodes."""
    diversity: str = "on"
    """No two X-nodes in one /16 or /48: C{on} (the default), C{off} (a testnet on one /16), or
    C{auto} (on, unless the candidates cannot allow it; each build without it says so)."""
    lifetime: float = 600.0
    """A path is replaced after this long (an entry path with coarse entries: about an hour, see
    L{phantom.path.entries}); an entry path's routing entry expires with it."""
    renewAhead: float = 60.0
    """A path's replacement is built between this long and twice this long, at random, before the
    path's lifetime ends."""
    rebuildJitter: float = 10.0
    """A lost path's replacement is built after a random delay of up to this many seconds."""
    coarseEntries: bool = True
    """Routing entries that date their path to no less than 10 minutes, published at a random
    moment 2 to 24 minutes after the path is up (L{phantom.path.entries}); off: expiring after
    C{lifetime} and published at once, for testnets that cannot wait."""
    maxParticipations: int = 200
    """The most paths under construction this node takes part in at once; more are refused."""
    poolSize: int = 64
    """How many node records the pool sampled ahead of builds aims to hold."""
    poolRefresh: float = 300.0
    """Seconds between fresh samples of the pool."""

    def __post_init__(self):
        if self.diversity not in ("on", "off", "auto"):
            raise ConfigError(f"path diversity is on, off or auto, not {self.diversity!r}")

@dataclass(frozen=True)
class TunnelSettings:
    """What the node does with tunnels as an owner."""

    serve: str = "echo"
    """Inbound tunnels to this node's AP-address: C{echo} (answer with what arrives), C{none}
    (refuse them), or C{HOST:PORT} (pass each on to that TCP service)."""
    forward: str = ""
    """Comma-separated C{HOST:PORT=AP}: listen on HOST:PORT, and carry each connection through a tunnel to AP."""
    idle: float = 600.0
    """Seconds after which a tunnel nothing has passed through is closed."""
    ownExit: bool = False
    """Open tunnels without exit paths, asking entry nodes directly: a non-anonymised client (paper §6.3)."""
    ownEntry: bool = False
    """Publish this node as the entry node of its own AP-address: a non-anonymised server (paper §6.3)."""

    def __post_init__(self):
        if self.serve not in ("echo", "none"):
            _configured(parseHostPort, self.serve)
        self.forwards()

    def forwards(self):
        """@return: the forwards, as C{((host, port), apText)} pairs. @raise ConfigError: malformed."""
        pairs = []
        for item in filter(None, (part.strip() for part in self.forward.split(","))):
            listen, sep, ap = item.rpartition("=")
            if not sep:
                raise ConfigError(f"forward {item!r}: give HOST:PORT=AP-ADDRESS")
            try:
                if ipaddress.ip_address(ap).packed[:1] != b"\xfd":
                    raise ValueError
            except ValueError:
                raise ConfigError(f"forward {item!r}: {ap!r} is not an AP-address (fd00::/8)") from None
            pairs.append((_configured(parseHostPort, listen), ap))
        return pairs


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to start."""

    dataDir: str
    listenEndpoint: str
    """A Twisted server endpoint string for the TLS port (TLS is added by the node)."""
    listenAddress: str | None = None
    """The address this node is reached at and binds its outbound connections to."""
    bootstrap: tuple = ()
    """L{Contact}s to keep links to."""
    apiAddress: tuple = DEFAULT_API_ADDRESS
    link: LinkLimits = field(default_factory=LinkLimits)
    dht: DhtSettings = field(default_factory=DhtSettings)
    path: PathSettings = field(default_factory=PathSettings)
    tunnel: TunnelSettings = field(default_factory=TunnelSettings)
    tun: str | None = None
    """The name of the tun device carrying this node's AP-address; C{None}: no device."""


def _configured(parse, text):
    """C{parse(text)}, an address parser of L{phantom.address}, its error a L{ConfigError}."""
    try:
        return parse(text)
    except AddressError as e:
        raise ConfigError(str(e)) from None


def listenEndpointFor(port, listenAddress):
    """
    The server endpoint string for C{port}: a bare port number listens on C{listenAddress}
    (all IPv4 addresses when none is given); anything else must be a TCP endpoint string.

    @raise ConfigError: a TLS endpoint string (the node adds TLS itself) or a bad port.
    """
    port = str(port).strip()
    if port.isdigit():
        if not 0 <= int(port) < 65536:
            raise ConfigError(f"{port} is not a port number")
        host = listenAddress or "0.0.0.0"
        if ":" in host:
            return f"tcp6:{port}:interface={host.replace(':', chr(92) + ':')}:backlog={LISTEN_BACKLOG}"
        return f"tcp:{port}:interface={host}:backlog={LISTEN_BACKLOG}"
    kind = port.partition(":")[0].lower()
    if kind not in ("tcp", "tcp6"):
        raise ConfigError(
            f"--port {port!r}: give a port number or a tcp:/tcp6: endpoint string "
            "(the node adds mutual TLS itself)"
        )
    return port


def readConfigFile(path):
    """
    Read the settings an INI file gives.

    @return: a dict with any of the keys C{listenAddress}, C{port}, C{apiAddress},
        C{bootstrap}, C{dataDir}, C{link} (a dict of L{LinkLimits} fields).
    @raise ConfigError: unreadable file or malformed value.
    """
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_string("[DEFAULT]\n" + f.read(), source=path)
    except (OSError, configparser.Error) as e:
        raise ConfigError(f"config file {path}: {e}") from e
    settings = {}
    if parser.has_section("dht"):
        dht = parser["dht"]
        if "p2p_address" in dht:
            settings["listenAddress"], settings["port"] = _configured(parseHostPort, dht["p2p_address"])
        if "api_address" in dht:
            settings["apiAddress"] = _configured(parseHostPort, dht["api_address"])
        if "bootstrapper" in dht:
            settings["bootstrap"] = _configured(parseContacts, dht["bootstrapper"])
    if parser.has_section("phantom"):
        section = parser["phantom"]
        if "data_dir" in section:
            settings["dataDir"] = os.path.expanduser(section["data_dir"])
        if "bootstrap" in section:
            settings["bootstrap"] = _configured(parseContacts, section["bootstrap"])
        if "tun" in section:
            settings["tun"] = section["tun"].strip()
    if parser.has_section("link"):
        settings["link"] = _readSettings(LinkLimits, parser["link"], path)
    if parser.has_section("dht"):
        settings["dht"] = _readSettings(DhtSettings, parser["dht"], path)
    if parser.has_section("path"):
        settings["path"] = _readSettings(PathSettings, parser["path"], path)
    if parser.has_section("tunnel"):
        settings["tunnel"] = _readSettings(TunnelSettings, parser["tunnel"], path)
    return settings


def _readSettings(settingsType, section, path):
    limits = {}
    for limit in fields(settingsType):
        key = "".join("_" + c.lower() if c.isupper() else c for c in limit.name)
        if key in section and limit.type is str:
            limits[limit.name] = section[key].strip()
        elif key in section and limit.type is bool:
            try:
                limits[limit.name] = section.getboolean(key)
            except ValueError:
                raise ConfigError(f"config file {path}: [{section.name}] {key} = {section[key]!r} is not yes or no") from None
        elif key in section:
            try:
                value = limit.type(section[key]) if callable(limit.type) else float(section[key])
            except ValueError:
                raise ConfigError(f"config file {path}: [{section.name}] {key} = {section[key]!r} is not a number") from None
            if value <= 0:
                raise ConfigError(f"config file {path}: [{section.name}] {key} must be positive")
            limits[limit.name] = value
    return limits


def resolveConfig(
    *, dataDir=None, port=None, listenAddress=None, bootstrap=None, apiAddress=None, serve=None, forward=None,
    ownExit=None, ownEntry=None, tun=None, configFile=None,
):
    """
    Build the node's configuration: defaults, overridden by C{configFile}, overridden by the
    other arguments (the command line), which are C{None} where not given.
    """
    settings = readConfigFile(configFile) if configFile else {}
    for key, value in (
        ("dataDir", dataDir),
        ("port", port),
        ("listenAddress", listenAddress),
        ("bootstrap", _configured(parseContacts, bootstrap) if isinstance(bootstrap, str) else bootstrap),
        ("apiAddress", _configured(parseHostPort, apiAddress) if isinstance(apiAddress, str) else apiAddress),
        ("tun", tun),
    ):
        if value is not None:
            settings[key] = value
    for key, value in (("serve", serve), ("forward", forward), ("ownExit", ownExit), ("ownEntry", ownEntry)):
        if value is not None:
            settings.setdefault("tunnel", {})[key] = value
    listenAddress = settings.get("listenAddress")
    if listenAddress is not None:
        try:
            listenAddress = str(ipaddress.ip_address(listenAddress.strip("[]")))
        except ValueError:
            raise ConfigError(f"listen address {listenAddress!r} is not an IP address") from None
    return NodeConfig(
        dataDir=settings.get("dataDir") or os.path.expanduser("~/.phantom"),
        listenEndpoint=listenEndpointFor(settings.get("port", DEFAULT_PORT), listenAddress),
        listenAddress=None if listenAddress in WILDCARD_ADDRESSES else listenAddress,
        bootstrap=tuple(settings.get("bootstrap", ())),
        apiAddress=tuple(settings.get("apiAddress", DEFAULT_API_ADDRESS)),
        link=replace(LinkLimits(), **settings.get("link", {})),
        dht=replace(DhtSettings(), **settings.get("dht", {})),
        path=replace(PathSettings(), **settings.get("path", {})),
        tunnel=replace(TunnelSettings(), **settings.get("tunnel", {})),
        tun=_tunName(settings.get("tun")),
    )


def _tunName(name):
    if name is None:
        return None
    if not 0 < len(name.encode()) <= 15 or "/" in name or name.strip() != name:
        raise ConfigError(f"tun device name {name!r}: 1 to 15 bytes, no slash or spaces")
    return name
