"""
What every mode of testnet provides, L{ITestnet}, so that the command line (L{phantom.testnet.cli})
can run any of them; each mode is a module of its own (L{phantom.testnet.loopback}).
"""

from zope.interface import Attribute, Interface

from phantom.testnet.processes import STOP_TIMEOUT

DEFAULT_TIMEOUT = 60.0
"""Seconds C{up} waits, in all, for every node to start and have a peer."""


class ITestnet(Interface):
    """
    Nodes of one testnet, run one way (a mode). A mode's class is made from a
    L{Manifest<phantom.testnet.manifest.Manifest>} and a reactor, and has a class method
    C{plan(reactor, directory, count, port)} that lays out a new testnet of that mode.
    """

    mode = Attribute("The mode's name, as manifests record it.")
    manifest = Attribute("The L{Manifest<phantom.testnet.manifest.Manifest>} of the testnet.")

    def up(timeout=DEFAULT_TIMEOUT, progress=None):
        """
        Write the manifest, start every node, wait until each has logged that it listens and
        then until each has at least one peer.

        @param timeout: seconds to wait, in all.
        @param progress: called with a line of text at each step.
        @return: a coroutine.
        @raise TestnetError: something failed or took too long; everything started was stopped.
        """

    def status():
        """
        @return: a coroutine giving a L{NodeState<phantom.testnet.processes.NodeState>} for each
            node, in manifest order.
        """

    def down(timeout=STOP_TIMEOUT):
        """
        Stop every node; it is fine if some or all do not run.

        @return: a coroutine giving the number of processes signalled.
        @raise TestnetError: a node process is left.
        """

    def describeNode(node):
        """
        @param node: a L{NodeSpec<phantom.testnet.manifest.NodeSpec>} of this testnet.
        @return: a JSON-ready dict of what this mode adds to the node's status (may be empty).
        """
