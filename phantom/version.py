"""
The versions a node and its tools report (C{twistd phantom --version}, C{phantomctl --version}).

Imports nothing heavy: C{phantomctl} reads it before Twisted is loaded.
"""

PROTOCOL_VERSION = 1
"""The version of the node-to-node protocol this implementation speaks (docs/link.md): raised
with any change that nodes of the previous version would not understand."""


def packageVersion():
    """@return: Phantom's version from the installed package's metadata (C{setup.cfg})."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("phantom")
    except PackageNotFoundError:
        from phantom import __version__

        return f"{__version__} (not installed)"


def versionLine(program):
    """@return: C{PROGRAM (Phantom) X.Y.Z, protocol N}."""
    return f"{program} (Phantom) {packageVersion()}, protocol {PROTOCOL_VERSION}"
