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

Each section may also set any field of its settings class in snake case: [phantom]
L{LogSettings}, [dht] L{DhtSettings}, [link] L{LinkLimits}, [path] L{PathSettings}, [tunnel]
L{TunnelSettings} (``get_timeout = 10``). L{configSchema} lists every key with its kind, default
and doc (the field's docstring); an unknown section or key is an error that names the file, the
key and the valid keys. docs/config.md is generated from the schema (C{python -m phantom.config}).
"""

import configparser
import functools
import ipaddress
import os
import re
from dataclasses import dataclass, field, fields, replace

from twisted.internet.endpoints import clientFromString, serverFromString

from phantom.address import HOST_NAME, AddressError, formatHostPort, isIPAddress, parseContacts, parseHostPort
from phantom.errors import ConfigError

DEFAULT_PORT = 7402
LISTEN_BACKLOG = 1024
"""Connections the kernel queues for the TLS port: a burst of connects must not be dropped."""
WILDCARD_ADDRESSES = ("0.0.0.0", "::")
MAX_KEPT_PATHS = 8
"""The most entry or exit paths a node keeps built."""
ZERO_ALLOWED = ("entryPaths", "exitPaths")
"""Numeric settings for which 0 means something (none); every other must be positive."""


LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


@dataclass(frozen=True)
class LogSettings:
    """How the node logs (the [phantom] section)."""

    logLevel: str = "info"
    """The least severe events written: debug, info, warn, error or critical."""
    safeLogging: bool = True
    """Scrub IP addresses and AP-addresses from log lines; C{no} only to debug."""
    logJson: str = ""
    """Also write every event as a line of JSON to this file; empty: no such file."""
    logFiles: int = 5
    """Rotated log files kept besides the current one (with twistd --logfile)."""
    logFileBytes: int = 1000000
    """A log file is rotated when it reaches this size."""
    warningInterval: float = 60.0
    """Seconds within which one kind of warning about one peer is written once; the rest are counted."""

    def __post_init__(self):
        if self.logLevel not in LOG_LEVELS:
            raise ConfigError(f"log_level is one of {', '.join(LOG_LEVELS)}, not {self.logLevel!r}")


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
    """More work than this from one peer within a second closes its link: each frame counts
    one, and one more for every 16 KiB it carries."""
    bytesPerTurn: int = 16384
    """A link decodes at most this many of the bytes it read in one turn of the reactor; the
    rest waits, its reading paused, for its next turn."""
    framesPerTurn: int = 16
    """A link handles at most this many frames in one turn of the reactor, then lets the other
    links and clients have theirs before it reads on."""
    maxWriteBuffer: int = 262144
    """Bytes a link may hold that the kernel has not taken yet: above it the link stops reading
    (or, spliced into a tunnel, stops the link that feeds it) until they are sent."""
    drainTimeout: float = 60.0
    """A link whose peer takes none of what is held for it within this time is closed."""
    maxInbound: int = 2048
    """Inbound connections at once, in any state; more are refused at accept."""
    maxInboundPerAddress: int = 256
    """Inbound connections at once from one address (its /32, or its /64 for IPv6)."""
    maxHandshakes: int = 256
    """Inbound connections at once that have not yet sent their OPEN frame."""
    maxHandshakesPerAddress: int = 16
    """Inbound connections at once from one address that have not yet sent their OPEN frame."""
    floodCooldown: float = 30.0
    """An address whose link was closed for too much work is refused at accept for this long,
    before any TLS work, and an IPv6 /64 once 4 of its addresses were; 0: never."""
    maxParked: int = 256
    """Links that came before anyone awaited them, held at once; more are closed."""
    maxParkedPerAddress: int = 32
    """Links from one address held at once before anyone awaited them."""
    descriptorReserve: int = 64  # phantom.link.quota.DESCRIPTOR_RESERVE
    """File descriptors kept out of reach of inbound connections: the link port takes at most
    half of the rest of the process's limit, the module API an eighth, so the control socket,
    outbound links and state files always find one."""


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

    apiMaxConnections: int = 256
    """Module-API connections open at once; more are refused at accept."""
    apiMaxConnectionsPerAddress: int = 128
    """Module-API connections open at once from one address (its /32, or its /64 for IPv6)."""
    apiMaxOutstanding: int = 64
    """GETs one module-API connection may have waiting for their answer; beyond it, and while
    the client reads no answers, the connection is not read from."""
    apiMaxOutstandingTotal: int = 1024
    """GETs all module-API connections together may have waiting; beyond it none is read from."""
    apiHeaderTimeout: float = 10.0
    """A module-API message whose first byte has arrived must be whole within this time."""
    apiIdleTimeout: float = 600.0
    """A module-API connection on which nothing arrived and no GET waited for this long is closed."""

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
    entryPaths: int = 2
    """Entry paths kept built (from start, through renewal and failures) where the node takes
    inbound tunnels (C{serve} is not C{none}, or it has a tun device), each with its own entry
    node, so that the AP-address stays reachable while one of them is rebuilt; 0 builds none."""
    exitPaths: int = 1
    """Exit paths kept built, so that a first packet need not wait for one, where the node has a
    tun device or forwards; 0 builds them only when a tunnel asks."""

    def __post_init__(self):
        if self.diversity not in ("on", "off", "auto"):
            raise ConfigError(f"path diversity is on, off or auto, not {self.diversity!r}")
        for key, count in (("entry_paths", self.entryPaths), ("exit_paths", self.exitPaths)):
            if not 0 <= count <= MAX_KEPT_PATHS:
                raise ConfigError(f"[path] {key} is 0 to {MAX_KEPT_PATHS}, not {count}")

@dataclass(frozen=True)
class TunnelSettings:
    """What the node does with tunnels as an owner."""

    serve: str = "echo"
    """Inbound tunnels to this node's AP-address: C{echo} (answer with what arrives), C{none}
    (refuse them), C{HOST:PORT} (pass each on to that TCP service), or a Twisted client endpoint
    string (C{unix:/run/app.sock}, C{tcp:host=127.0.0.1:port=8080})."""
    forward: str = ""
    """Comma-separated C{LISTEN=AP}: listen on LISTEN, C{HOST:PORT} or a Twisted server endpoint
    string (C{tcp:8080:interface=127.0.0.1}, C{unix:/run/ap.sock}), and carry each connection
    through a tunnel to AP."""
    idle: float = 600.0
    """Seconds after which a tunnel nothing has passed through is closed."""
    ownExit: bool = False
    """Open tunnels without exit paths, asking entry nodes directly: a non-anonymised client (paper §6.3)."""
    ownEntry: bool = False
    """Publish this node as the entry node of its own AP-address: a non-anonymised server (paper §6.3)."""

    def __post_init__(self):
        self.served()
        self.forwards()

    def served(self):
        """
        @return: C{echo}, C{none}, C{(host, port)}, or a client endpoint string.
        @raise ConfigError: none of these.
        """
        if self.serve in ("echo", "none"):
            return self.serve
        return _hostPortOrEndpoint(self.serve, clientFromString, "serve", "echo, none, HOST:PORT or a Twisted client endpoint string")

    def forwards(self):
        """
        @return: the forwards, as C{(listen, apText)} pairs, C{listen} a C{(host, port)} or a
            server endpoint string.
        @raise ConfigError: malformed.
        """
        pairs = []
        for item in filter(None, (part.strip() for part in self.forward.split(","))):
            listen, sep, ap = item.rpartition("=")
            if not sep:
                raise ConfigError(f"forward {item!r}: give HOST:PORT=AP-ADDRESS or ENDPOINT=AP-ADDRESS")
            try:
                if ipaddress.ip_address(ap).packed[:1] != b"\xfd":
                    raise ValueError
            except ValueError:
                raise ConfigError(f"forward {item!r}: {ap!r} is not an AP-address (fd00::/8)") from None
            what = "HOST:PORT or a Twisted server endpoint string"
            pairs.append((_hostPortOrEndpoint(listen, serverFromString, f"forward {item!r}:", what), ap))
        return pairs


def _hostPortOrEndpoint(text, fromString, option, what):
    """
    @return: C{(host, port)} for C{HOST:PORT}, else C{text}, checked as an endpoint string.
    @raise ConfigError: neither.
    """
    try:
        return parseHostPort(text)
    except AddressError:
        pass
    if ":" in text:
        try:
            # Parsing makes the endpoint object only: no reactor is used until it connects or listens.
            fromString(None, text)
            return text
        except Exception as e:  # noqa: BLE001 (an endpoint parser raises whatever it likes)
            raise ConfigError(f"{option} {text!r}: not {what} ({e})") from None
    raise ConfigError(f"{option} {text!r}: not {what}")


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to start."""

    dataDir: str
    listenEndpoint: str
    """A Twisted server endpoint string for the TLS port (TLS is added by the node)."""
    listenAddress: str | None = None
    """The address this node is reached at and binds its outbound connections to."""
    bootstrap: tuple = ()
    """L{Contact}s to keep links to; their hosts may be host names, resolved on every try."""
    advertiseAddress: tuple | None = None
    """C{(host, port)} other nodes are told to reach this node at, when that is not the address
    it binds (NAT, port forwarding): the host an IP address or a host name, the port C{None}
    for the port it listens on."""
    listenEverywhere: bool = False
    """Whether the TLS port listens on every IPv6 and IPv4 address (no listen address given)."""
    apiAddress: tuple | None = None
    """C{(host, port)} of the DHT module API; C{None}: it does not listen."""
    metricsAddress: tuple | None = None
    """C{(host, port)} where Prometheus metrics are served over HTTP; C{None}: they are not."""
    log: LogSettings = field(default_factory=LogSettings)
    link: LinkLimits = field(default_factory=LinkLimits)
    dht: DhtSettings = field(default_factory=DhtSettings)
    path: PathSettings = field(default_factory=PathSettings)
    tunnel: TunnelSettings = field(default_factory=TunnelSettings)
    tun: str | None = None
    """The name of the tun device carrying this node's AP-address; C{None}: no device."""
    settings: tuple = field(default=(), compare=False)
    """The L{Setting}s this configuration was made of (see L{formatConfig})."""


def _configured(parse, text, where=None):
    """
    C{parse(text)}, an address parser of L{phantom.address}, its error a L{ConfigError}.

    @param where: what gave C{text} (C{file F: [dht] p2p_address}), for the message.
    """
    try:
        return parse(text)
    except AddressError as e:
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None


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


GLOBAL_KEYS = {"hostkey": "VoidPhone's host key file; read by other VoidPhone modules, ignored here (the node keeps its keys in data_dir)."}
"""Keys a file may give before its first section."""

@dataclass(frozen=True)
class ConfigKey:
    """
    One key of the config file.

    @ivar section: the section it is in.
    @ivar name: its name, in snake case.
    @ivar kind: what its value is, in words (C{seconds}, C{integer}, C{yes/no}, C{HOST:PORT}, ...).
    @ivar default: the value it has when no file or option gives it, as the file would write it.
    @ivar doc: what it does.
    @ivar attribute: the field of the section's settings class that holds it, if any.
    """

    section: str
    name: str
    kind: str
    default: str
    doc: str
    attribute: str | None = None


def snakeCase(name):
    """C{maxFramesPerSecond} -> C{max_frames_per_second}."""
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _fieldDocs(settingsType):
    """The attribute docstrings of a settings class, by field name."""
    import ast
    import inspect

    docs = {}
    body = ast.parse(inspect.getsource(settingsType)).body[0].body
    for statement, following in zip(body, body[1:]):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def _kindOf(settingsField):
    name = getattr(settingsField.type, "__name__", str(settingsField.type))
    return {"float": "number", "int": "integer", "bool": "yes/no", "str": "text"}.get(name, name)


def _formatValue(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _settingsKeys(section, settingsType):
    docs = _fieldDocs(settingsType)
    defaults = settingsType()
    return [
        ConfigKey(
            section, snakeCase(f.name), _kindOf(f), _formatValue(getattr(defaults, f.name)), docs.get(f.name, ""), f.name
        )
        for f in fields(settingsType)
    ]


@functools.cache
def configSchema():
    """
    Every key of the config file: the ones below, and every field of L{LogSettings} ([phantom]),
    L{DhtSettings} ([dht]), L{LinkLimits} ([link]), L{PathSettings} ([path]) and L{TunnelSettings}
    ([tunnel]) in snake case. A new field of one of those classes, with its docstring, is a new
    key; nothing else needs to change.

    @return: a list of L{ConfigKey}, section by section.
    """
    keys = [
        ConfigKey("phantom", "data_dir", "path", "~/.phantom", "Where the node keeps its keys and state."),
        ConfigKey("phantom", "bootstrap", "contacts", "", "The same as [dht] bootstrapper."),
        ConfigKey(
            "phantom", "tun", "device name", "",
            "Carry this node's AP-address on a tun device of this name (needs CAP_NET_ADMIN); empty: no device.",
        ),
        ConfigKey(
            "phantom", "metrics_address", "HOST:PORT", "",
            "Serve Prometheus metrics over plain HTTP here (docs/metrics.md); empty: no metrics.",
        ),
        *_settingsKeys("phantom", LogSettings),
        ConfigKey(
            "dht", "p2p_address", "HOST:PORT", formatHostPort(WILDCARD_ADDRESSES[0], DEFAULT_PORT),
            "Where the node's one TLS port listens; a specific HOST is also the address peers are told "
            "to reach it at and outbound links leave from. The port may instead be a tcp:/tcp6: endpoint string.",
        ),
        ConfigKey(
            "dht", "api_address", "HOST:PORT", "",
            "Where the VoidPhone DHT module API listens (plain TCP, for local programs); empty: it does not listen.",
        ),
        ConfigKey(
            "dht", "advertise_address", "HOST[:PORT]", "",
            "The address other nodes are told to reach this node at, when it is not the one it binds "
            "(NAT, port forwarding): an IP address or a host name, the port by default the one it listens on; "
            "empty: the listen address, or the address the node reaches its peers from.",
        ),
        ConfigKey(
            "dht", "bootstrapper", "contacts", "",
            "Comma-separated HOST:PORT or NODEID@HOST:PORT (pinned) of nodes to join the network through.",
        ),
        *_settingsKeys("dht", DhtSettings),
        *_settingsKeys("link", LinkLimits),
        *_settingsKeys("path", PathSettings),
        *_settingsKeys("tunnel", TunnelSettings),
    ]
    return tuple(keys)


_SETTINGS_TYPES = {"phantom": "LogSettings", "dht": "DhtSettings", "link": "LinkLimits", "path": "PathSettings", "tunnel": "TunnelSettings"}


def _suggest(word, choices):
    import difflib

    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def readConfigFile(path):
    """
    Read the keys an INI file gives, refusing any the schema (L{configSchema}) does not know.

    @return: a dict C{{(section, key): text}}.
    @raise ConfigError: unreadable file, or an unknown section or key (named, with the valid ones).
    """
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), default_section="\0", interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_string("[\0global]\n" + f.read(), source=path)
    except (OSError, UnicodeDecodeError, configparser.Error) as e:
        raise ConfigError(f"config file {path}: {e}") from e
    known = {}
    for key in configSchema():
        known.setdefault(key.section, []).append(key.name)
    given = {}
    for section in parser.sections():
        if section == "\0global":
            for name in parser[section]:
                if name not in GLOBAL_KEYS:
                    raise ConfigError(
                        f"config file {path}: unknown key {name!r} before the first section{_suggest(name, list(GLOBAL_KEYS))}; "
                        f"valid there: {', '.join(GLOBAL_KEYS)}; the others belong in a section: "
                        + ", ".join(f"[{s}]" for s in known)
                    )
            continue
        if section not in known:
            raise ConfigError(
                f"config file {path}: unknown section [{section}]{_suggest(section, list(known))}; "
                f"valid sections: {', '.join(f'[{s}]' for s in known)}"
            )
        for name, text in parser[section].items():
            if name not in known[section]:
                raise ConfigError(
                    f"config file {path}: [{section}] unknown key {name!r}{_suggest(name, known[section])}; "
                    f"valid keys in [{section}]: {', '.join(known[section])}"
                )
            given[(section, name)] = text.strip()
    return given


def _parseField(settingsField, text, where):
    if settingsField.type is str:
        return text
    if settingsField.type is bool:
        value = configparser.ConfigParser.BOOLEAN_STATES.get(text.lower())
        if value is None:
            raise ConfigError(f"{where} = {text!r} is not yes or no")
        return value
    try:
        value = settingsField.type(text)
    except ValueError:
        raise ConfigError(f"{where} = {text!r} is not a number") from None
    if value < 0 or (value == 0 and settingsField.name not in ZERO_ALLOWED):
        raise ConfigError(f"{where} must be positive")
    return value


def _readSettings(settingsType, section, given, origin):
    values = {}
    for settingsField in fields(settingsType):
        key = (section, snakeCase(settingsField.name))
        if key in given:
            values[settingsField.name] = _parseField(settingsField, given[key], f"{origin(key)}: [{section}] {key[1]}")
    return values


@dataclass(frozen=True)
class Setting:
    """One line of the effective configuration: a key, its value, and where the value came from."""

    key: ConfigKey
    value: str
    source: str
    """C{default}, C{file PATH} or C{command line}."""


def parseNamedContacts(text):
    """Contacts whose hosts may be host names (L{parseContacts} with names)."""
    return parseContacts(text, names=True)


def parseAdvertised(text):
    """
    Parse C{HOST[:PORT]}: an IPv4 address, C{[IPv6]} or a bare IPv6 address, or a host name,
    with an optional port.

    @return: C{(host, port)}, the port C{None} when not given.
    @raise AddressError: not such a thing.
    """
    text = text.strip()
    if isIPAddress(text.strip("[]")):
        return text.strip("[]"), None
    if HOST_NAME.match(text) and not text.replace(".", "").isdigit():
        return text, None
    return parseHostPort(text, names=True)


def resolveConfig(
    *, dataDir=None, port=None, listenAddress=None, bootstrap=None, apiAddress=None, serve=None, forward=None,
    ownExit=None, ownEntry=None, tun=None, configFile=None, advertiseAddress=None, metricsAddress=None,
):
    """
    Build the node's configuration: defaults, overridden by C{configFile}, overridden by the
    other arguments (the command line), which are C{None} where not given.

    @return: a L{NodeConfig}, its C{settings} saying where each value came from.
    @raise ConfigError: an unknown key, or a value that cannot be used.
    """
    given = readConfigFile(configFile) if configFile else {}
    fromFile = {key: f"file {configFile}" for key in given}
    commandLine = {}
    for key, value in (
        (("phantom", "data_dir"), dataDir),
        (("dht", "api_address"), apiAddress),
        (("phantom", "metrics_address"), metricsAddress),
        (("dht", "bootstrapper"), bootstrap),
        (("phantom", "tun"), tun),
        (("tunnel", "serve"), serve),
        (("tunnel", "forward"), forward),
        (("tunnel", "own_exit"), None if ownExit is None else _formatValue(ownExit)),
        (("tunnel", "own_entry"), None if ownEntry is None else _formatValue(ownEntry)),
        (("dht", "advertise_address"), advertiseAddress),
    ):
        if value is not None:
            commandLine[key] = value
    if ("dht", "bootstrapper") in commandLine:
        given.pop(("phantom", "bootstrap"), None)
    given.update(commandLine)
    origin = lambda key: "command line" if key in commandLine else fromFile.get(key, "default")

    fileHost = filePort = None
    if ("dht", "p2p_address") in given:
        where = f"{origin(('dht', 'p2p_address'))}: [dht] p2p_address"
        fileHost, filePort = _configured(parseHostPort, given[("dht", "p2p_address")], where)
    if port is not None or listenAddress is not None:
        commandLine[("dht", "p2p_address")] = True
    listenAddress = listenAddress if listenAddress is not None else fileHost
    port = port if port is not None else (filePort if filePort is not None else DEFAULT_PORT)
    if listenAddress is not None:
        try:
            listenAddress = str(ipaddress.ip_address(listenAddress.strip("[]")))
        except ValueError:
            raise ConfigError(f"listen address {listenAddress!r} is not an IP address") from None
    listenEndpoint = listenEndpointFor(port, listenAddress)
    p2pText = str(port).strip()
    p2pIsPort = p2pText.isdigit()
    if p2pText.isdigit():
        p2pText = formatHostPort(listenAddress or WILDCARD_ADDRESSES[0], p2pText)

    bootstrapText = given.get(("dht", "bootstrapper"), given.get(("phantom", "bootstrap"), ""))
    bootstrapKey = ("dht", "bootstrapper") if ("dht", "bootstrapper") in given else ("phantom", "bootstrap")
    contacts = bootstrapText if not isinstance(bootstrapText, str) else _configured(
        parseNamedContacts, bootstrapText, f"{origin(bootstrapKey)}: [{bootstrapKey[0]}] {bootstrapKey[1]}"
    )
    apiText = given.get(("dht", "api_address"), "")
    if not isinstance(apiText, str):
        apiText = formatHostPort(*apiText)
    api = _configured(parseHostPort, apiText, f"{origin(('dht', 'api_address'))}: [dht] api_address") if apiText else None
    metricsText = given.get(("phantom", "metrics_address"), "")
    metrics = (
        _configured(parseHostPort, metricsText, f"{origin(('phantom', 'metrics_address'))}: [phantom] metrics_address")
        if metricsText else None
    )
    advertisedText = given.get(("dht", "advertise_address"), "")
    if not isinstance(advertisedText, str):
        host, advertisedPort = advertisedText
        advertisedText = host if advertisedPort is None else formatHostPort(host, advertisedPort)
    advertised = (
        _configured(parseAdvertised, advertisedText, f"{origin(('dht', 'advertise_address'))}: [dht] advertise_address")
        if advertisedText or ("dht", "advertise_address") in commandLine else None
    )
    sections = {
        section: _readSettings(globals()[typeName], section, given, origin) for section, typeName in _SETTINGS_TYPES.items()
    }
    made = {}
    for section, typeName in _SETTINGS_TYPES.items():
        try:
            made[section] = globals()[typeName](**sections[section])
        except ConfigError as e:
            origins = sorted({origin(key) for key in given if key[0] == section} - {"default"})
            raise ConfigError(f"{', '.join(origins) or 'default'}: [{section}] {e}") from None
    config = NodeConfig(
        dataDir=os.path.expanduser(given.get(("phantom", "data_dir")) or "~/.phantom"),
        listenEndpoint=listenEndpoint,
        listenAddress=None if listenAddress in WILDCARD_ADDRESSES else listenAddress,
        bootstrap=tuple(contacts),
        advertiseAddress=advertised,
        listenEverywhere=listenAddress is None and p2pIsPort,
        apiAddress=api,
        metricsAddress=metrics,
        log=made["phantom"],
        link=made["link"],
        dht=made["dht"],
        path=made["path"],
        tunnel=made["tunnel"],
        tun=_tunName(given.get(("phantom", "tun")) or None),
    )
    shown = {
        ("phantom", "data_dir"): config.dataDir,
        ("phantom", "bootstrap"): ", ".join(map(str, config.bootstrap)),
        ("phantom", "tun"): config.tun or "",
        ("phantom", "metrics_address"): metricsText,
        ("dht", "p2p_address"): p2pText,
        ("dht", "api_address"): apiText,
        ("dht", "advertise_address"): advertisedText,
        ("dht", "bootstrapper"): ", ".join(map(str, config.bootstrap)),
    }
    settings = []
    for key in configSchema():
        where = (key.section, key.name)
        if key.attribute is not None:
            value = _formatValue(getattr(getattr(config, _SECTION_ATTRIBUTES[key.section]), key.attribute))
        else:
            value = shown[where]
        if where in (("phantom", "bootstrap"), ("dht", "bootstrapper")):
            where = bootstrapKey
        settings.append(Setting(key, value, origin(where)))
    return replace(config, settings=tuple(settings))


_SECTION_ATTRIBUTES = {"phantom": "log", "dht": "dht", "link": "link", "path": "path", "tunnel": "tunnel"}


def formatConfig(config):
    """
    The effective configuration as an INI file, each value with where it came from.

    @param config: a L{NodeConfig} made by L{resolveConfig}.
    @return: the text, ending with a newline.
    """
    lines = []
    section = None
    width = max(len(f"{s.key.name} = {s.value}") for s in config.settings)
    for setting in config.settings:
        if setting.key.section != section:
            section = setting.key.section
            lines.extend(([""] if lines else []) + [f"[{section}]"])
        line = f"{setting.key.name} = {setting.value}"
        lines.append(f"{line.ljust(width)}  ; {setting.source}")
    return "\n".join(lines) + "\n"


def _tunName(name):
    if name is None:
        return None
    if not 0 < len(name.encode()) <= 15 or "/" in name or name.strip() != name:
        raise ConfigError(f"tun device name {name!r}: 1 to 15 bytes, no slash or spaces")
    return name


def configReference():
    """
    docs/config.md: every key of the schema, section by section, as Markdown.

    @return: the text, ending with a newline.
    """
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from phantom/config.py by `python -m phantom.config > docs/config.md`; "
        "tests/test_config.py checks that it is current. -->",
        "",
        "`twistd phantom --config FILE` reads an INI file in the VoidPhone style: `;` and `#` start",
        "comments, keys before the first section are global. Options on the command line override the",
        "file. A section or key not listed here is an error naming the file, the key and the valid",
        "keys. `twistd phantom --print-config` prints the effective configuration, each value with",
        "where it came from (`default`, `file PATH`, `command line`), and exits (1 when it is invalid).",
        "",
        "Keys before the first section: " + ", ".join(f"`{k}` ({doc})" for k, doc in GLOBAL_KEYS.items()),
    ]
    section = None
    for key in configSchema():
        if key.section != section:
            section = key.section
            lines += ["", f"## [{section}]", "", "| key | kind | default | meaning |", "| --- | --- | --- | --- |"]
        doc = key.doc.replace("|", "\\|")
        doc = re.sub(r"[CL]\{([^}]*)\}", r"`\1`", doc)
        default = f"`{key.default}`" if key.default else "(empty)"
        lines.append(f"| `{key.name}` | {key.kind} | {default} | {doc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(configReference(), end="")
