"""
The node's log, as twistd writes it: a level, safe logging, warnings rate-limited, a bounded
number of rotated files, and optionally JSON lines. Each step is a L{twisted.logger} observer
that passes events on to the next:

    event -> L{quietControlConnections} -> level filter -> L{RateLimitedObserver}
          -> L{ScrubbingObserver} (safe logging) -> the text file (rotated) [+ the JSON lines file]

L{Options<phantom.tap.Options>} hands the settings to L{useForTwistd} and names
L{twistdObserver} as twistd's C{--logger}, unless the operator named another.
"""

import ipaddress
import re
import signal
import sys

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

SCRUBBED = "[scrubbed]"
"""What an IP address or AP-address is replaced by in a safe log (as Tor's SafeLogging)."""

_ADDRESS = re.compile(
    r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.])|(?<![\w.:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,8}(?::\d{5})?(?:%\w+)?(?![\w.:])"
)
_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.%\w]+)\]")

QUIET_EVENTS = (
    ("twisted.protocols.amp", "{cls} connection established"),
    ("twisted.protocols.amp", "{cls} connection lost"),
)
"""Events written at debug level only: every control-socket connection logs a pair of them."""


def _isAddress(text):
    try:
        ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    return True


OWN_ADDRESSES = set()
"""Addresses of this process's node that every scrubbing observer leaves in (L{keepOwnAddress})."""


def keepOwnAddress(text):
    """
    Leave C{text}, an address of this node's own that is public anyway (its published
    AP-address), unscrubbed in every log line from now on, so the operator can read it.
    """
    OWN_ADDRESSES.add(str(ipaddress.ip_address(text)))


def _keep(text, keep):
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return True
    return address.is_loopback or address.is_unspecified or str(address) in keep or str(address) in OWN_ADDRESSES


def scrub(text, keep=()):
    """
    @param text: a log line.
    @param keep: addresses (text) not to scrub: this node's own.
    @return: C{text} with every IPv4 and IPv6 address (so every AP-address) other than loopback,
        unspecified and C{keep} replaced by L{SCRUBBED}.
    """
    def replace(match):
        found = match.group(match.lastindex or 0)
        if not _isAddress(found) and ":" in found:
            # An IPv6 address with a port and no brackets: the port goes with it.
            found = found.rpartition(":")[0]
        return match.group(0) if _keep(found, keep) else SCRUBBED

    return _ADDRESS.sub(replace, _BRACKETED.sub(replace, text))


def _escape(text):
    return text.replace("{", "{{").replace("}", "}}")


_STANDARD = ("log_time", "log_level", "log_namespace", "log_logger", "log_source")


def flattened(event, transform=lambda text: text):
    """
    @return: a copy of C{event} with its text (and a failure's traceback) formatted and passed
        through C{transform}, and none of its other fields: what an observer can write safely.
    """
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}\n{failure.getTraceback()}".rstrip("\n")
    copy = {key: event[key] for key in _STANDARD if key in event}
    copy["log_format"] = _escape(transform(text))
    if "log_system" in event:
        copy["log_system"] = transform(str(event["log_system"]))
    return copy


@implementer(ILogObserver)
class ScrubbingObserver:
    """
    Passes on each event flattened (L{flattened}) with its addresses scrubbed (L{scrub}).

    @param observer: the next observer.
    @param keep: this node's own addresses, left in.
    """

    def __init__(self, observer, keep=()):
        self._observer = observer
        self._keep = frozenset(keep)

    def __call__(self, event):
        self._observer(flattened(event, lambda text: scrub(text, self._keep)))


def peerOf(event):
    """
    @return: the host of the peer an event is about (its C{peer}, C{address} or C{host} field,
        the first IP address in it), or C{None}.
    """
    for name in ("peer", "address", "host", "source"):
        value = event.get(name)
        if value is not None:
            text = str(value)
            match = _BRACKETED.search(text) or _ADDRESS.search(text)
            return match.group(1 if match.re is _BRACKETED else 0) if match else text
    return None


@implementer(ILogObserver)
class RateLimitedObserver:
    """
    Writes one warning (or worse) of a kind (namespace and format) per peer per interval, and at
    most C{perKind} of a kind per interval in all; the next one written of that kind says how
    many were left out. Less severe events pass as they are. Memory is bounded: what is counted
    is forgotten at the end of each interval, and at most C{perKind} peers are remembered per kind.

    @param observer: the next observer.
    @param interval: seconds; measured by the events' C{log_time}.
    @param perKind: lines of one kind per interval, whatever the peers.
    @param maxKinds: kinds counted at once; more, and the counts start again.
    """

    def __init__(self, observer, interval=60.0, perKind=10, maxKinds=1000):
        self._observer = observer
        self._interval = interval
        self._perKind = perKind
        self._maxKinds = maxKinds
        self._windowStart = None
        self._kinds = {}

    def __call__(self, event):
        level = event.get("log_level", LogLevel.info)
        if level < LogLevel.warn:
            self._observer(event)
            return
        now = event.get("log_time", 0.0)
        if len(self._kinds) >= self._maxKinds:
            self._kinds = {}
        if self._windowStart is None or not 0 <= now - self._windowStart < self._interval:
            self._windowStart = now
            self._kinds = {kind: (set(), suppressed) for kind, (_, suppressed) in self._kinds.items() if suppressed}
        kind = (event.get("log_namespace"), event.get("log_format"))
        peers, suppressed = self._kinds.get(kind, (set(), 0))
        peer = peerOf(event)
        if len(peers) >= self._perKind or peer in peers:
            self._kinds[kind] = (peers, suppressed + 1)
            return
        peers.add(peer)
        self._kinds[kind] = (peers, 0)
        if suppressed:
            event = dict(event)
            event["log_format"] = f"{event.get('log_format') or ''} ({{log_suppressed}} more like this left out)"
            event["log_suppressed"] = suppressed
        self._observer(event)


def quietControlConnections(observer):
    """@return: an observer passing events to C{observer}, L{QUIET_EVENTS} at debug level."""

    @implementer(ILogObserver)
    def demote(event):
        namespace, template = event.get("log_namespace"), event.get("log_format") or ""
        if any(namespace == n and template.startswith(t) for n, t in QUIET_EVENTS):
            event = dict(event, log_level=LogLevel.debug)
        observer(event)

    return demote


def makeObserver(settings, write, writeJson=None, keep=()):
    """
    The node's observer chain.

    @param settings: L{LogSettings<phantom.config.LogSettings>}.
    @param write: the observer that writes the text log.
    @param writeJson: an observer writing JSON lines, or C{None}.
    @param keep: this node's own addresses, not scrubbed.
    @return: an C{ILogObserver}.
    """
    sinks = [write] + ([writeJson] if writeJson is not None else [])

    @implementer(ILogObserver)
    def toSinks(event):
        for sink in sinks:
            sink(event)

    last = ScrubbingObserver(toSinks, keep) if settings.safeLogging else toSinks
    limited = RateLimitedObserver(last, interval=settings.warningInterval)
    level = LogLevel.levelWithName(settings.logLevel)
    filtered = FilteringLogObserver(limited, [LogLevelFilterPredicate(defaultLogLevel=level)])
    return quietControlConnections(filtered)


def rotatedFile(path, settings):
    """@return: a L{LogFile} at C{path} rotated at C{settings.logFileBytes}, keeping C{settings.logFiles}."""
    return LogFile.fromFullPath(path, rotateLength=settings.logFileBytes, maxRotatedFiles=settings.logFiles)


_forTwistd = []


def useForTwistd(config, serverOptions):
    """
    Remember what L{twistdObserver} needs: called when C{twistd phantom}'s options are parsed.

    @param config: the node's L{NodeConfig<phantom.config.NodeConfig>}.
    @param serverOptions: twistd's own options (C{logfile}, C{nodaemon}, C{syslog}, C{prefix}).
    """
    _forTwistd[:] = [(config, serverOptions)]


def twistdObserver():
    """
    The observer twistd logs to (named as its C{--logger}): the chain of L{makeObserver} ending
    where twistd would write (stdout, C{--logfile}, or syslog), the file rotated and bounded.
    """
    config, options = _forTwistd[0]
    try:
        return _twistdObserver(config, options)
    except OSError as e:
        raise SystemExit(f"phantom: cannot open the log file {e.filename}: {e.strerror}; fix --logfile or [phantom] log_json") from None


def _twistdObserver(config, options):
    settings = config.log
    path = options.get("logfile") or ""
    if options.get("syslog"):
        from twisted.python import syslog

        write = LegacyLogObserverWrapper(syslog.SyslogObserver(options.get("prefix") or "twisted").emit)
    elif path == "-" or (options.get("nodaemon") and not path):
        write = textFileLogObserver(sys.stdout)
    else:
        logFile = rotatedFile(path or "twistd.log", settings)
        write = textFileLogObserver(logFile)
        if not signal.getsignal(signal.SIGUSR1):
            signal.signal(signal.SIGUSR1, lambda *_: _rotateSoon(logFile))
    writeJson = jsonFileLogObserver(rotatedFile(settings.logJson, settings)) if settings.logJson else None
    keep = [config.listenAddress] if config.listenAddress else []
    return makeObserver(settings, write, writeJson, keep)


def _rotateSoon(logFile):
    from twisted.internet import reactor

    reactor.callFromThread(logFile.rotate)
