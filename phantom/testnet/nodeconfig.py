"""
The config file every node of a testnet is started with (C{--config}): a path shape that fits
the testnet's size, so that any node reaches any other's AP-address right after C{up}, with no
manual step. A testnet too small for any path makes its nodes their own entry and exit nodes.
Every node of a testnet is on one /16 (127.0.0.0/8, or the bridge's 10.199.0.0/16), so the
X-node diversity rule cannot hold: it is off here, and only here; routing entries are
published at once rather than 2 to 24 minutes after their path is up.
"""

import os

from phantom.path.keeper import fittingShape
from phantom.statefiles import writeAtomically

NODE_CONFIG = "phantom.conf"
"""The config file's name, inside each node's data directory."""


def nodeConfigSections(count):
    """
    @param count: how many nodes the testnet has.
    @return: the config file's sections: a dict of section name to a dict of key to value.
    """
    shape = fittingShape(count - 1)
    oneNetwork = {"diversity": "off", "coarse_entries": "no"}
    if shape is None:
        return {"path": oneNetwork, "tunnel": {"own_exit": "yes", "own_entry": "yes"}}
    return {"path": {"x": str(shape.x), "y": str(shape.y), **oneNetwork}}


def nodeConfigText(count):
    """@return: the text of the config file of each node of a testnet of C{count} nodes."""
    lines = [f"# written by phantom-testnet for a testnet of {count} nodes"]
    for section, settings in nodeConfigSections(count).items():
        lines += ["", f"[{section}]"] + [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def writeNodeConfig(dataDir, count):
    """
    Write the config file of a node of a testnet of C{count} nodes into its data directory.

    @return: its path.
    """
    path = os.path.join(dataDir, NODE_CONFIG)
    writeAtomically(path, nodeConfigText(count).encode())
    return path
