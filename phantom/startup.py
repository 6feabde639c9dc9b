"""
What stops a node from starting, in one line that names the fix: a data directory that is a file
or cannot be written, a port in use, a second node on the same data directory, a tun device
without CAP_NET_ADMIN. Part of the composition root, with L{phantom.node} and L{phantom.tap}.
"""

import errno
import os
import sys

from phantom.address import formatHostPort
from phantom.control import CONTROL_SOCKET
from phantom.frontend.device import whyNoTunDevice


class StartupError(Exception):
    """
    The node cannot start; the message says why and what to do, in one line.

    An exception, not C{SystemExit}, so that a daemonizing twistd reports it to its launcher
    (which waits for the daemon to say it started); L{printStartupErrorsInOneLine} prints it
    without a traceback when it ends the program.

    @ivar logged: whether the message was logged already (then it is not printed again).
    """

    logged = False


def printStartupErrorsInOneLine(hook=None):
    """
    Make an uncaught L{StartupError} print as one line, C{phantom: MESSAGE} (exit code 1).

    @param hook: the C{sys.excepthook} to leave other exceptions to; the current one if not given.
    """
    previous = hook or sys.excepthook

    def oneLine(kind, value, traceback):
        if issubclass(kind, StartupError):
            if not value.logged:
                print(f"phantom: {value}", file=sys.stderr)
        else:
            previous(kind, value, traceback)

    sys.excepthook = oneLine


def checkDataDir(path):
    """
    @raise StartupError: C{path} is not a directory this process can make and write to.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise StartupError(f"--data-dir {path} is a file, not a directory: give a directory (it is made if missing)")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing) or "."
    if not os.path.isdir(existing):
        raise StartupError(f"--data-dir {path}: {existing} is a file, not a directory: give another --data-dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StartupError(
            f"--data-dir {path}: {existing} is not writable by this user (uid {os.geteuid()}): "
            "change its owner or mode, or give another --data-dir"
        )


def _why(socketError):
    code = getattr(socketError, "errno", None)
    return os.strerror(code).lower() if code else str(socketError)


def explainListenError(error, config):
    """
    @param error: a L{CannotListenError<twisted.internet.error.CannotListenError>} raised while
        the node's services started.
    @param config: the node's L{NodeConfig<phantom.config.NodeConfig>}.
    @return: what went wrong and what to do, in one line.
    """
    port, code = error.port, getattr(error.socketError, "errno", None)
    if isinstance(port, bytes) and port.endswith(CONTROL_SOCKET.encode()):
        if "lock" in str(error.socketError).lower():
            return (
                f"another node is running on --data-dir {config.dataDir} (its control socket is locked): "
                "stop it, or give this node its own --data-dir"
            )
        return f"cannot listen on the control socket {port.decode(errors='replace')}: {_why(error.socketError)}"
    if config.tun is not None and port in (config.tun, config.tun.encode()):
        why = whyNoTunDevice() or _why(error.socketError)
        return f"cannot create tun device {config.tun}: {why}; run as root or with CAP_NET_ADMIN, or leave out --tun"
    if config.apiAddress is not None and port == config.apiAddress[1]:
        what, option = f"the DHT module API address {formatHostPort(*config.apiAddress)}", "--api-address"
    elif config.metricsAddress is not None and port == config.metricsAddress[1]:
        what, option = f"the metrics address {formatHostPort(*config.metricsAddress)}", "--metrics-address"
    else:
        what, option = f"the TLS port {error.interface or '*'}:{port}", "--port or --listen-address"
    why = os.strerror(code) if code else str(error.socketError)
    hint = {
        errno.EADDRINUSE: " (another node or program listens there)",
        errno.EADDRNOTAVAIL: " (no interface of this host has that address)",
        errno.EACCES: " (ports below 1024 need root)",
    }.get(code, "")
    return f"cannot listen on {what}: {why}{hint}; give another {option}"
