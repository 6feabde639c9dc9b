"""What the metrics ask of a node beyond what its control socket does."""

from phantom.control.interfaces import IControlledNode


class IMeasuredNode(IControlledNode):
    """A node as its metrics see it: its control socket's view, and a few counts more."""

    def relayedCount():
        """
        @return: how many paths of other nodes it relays (including those it is the entry node of).
        """

    def participationCount():
        """
        @return: how many paths under construction it takes part in.
        """

    def storedBytes():
        """
        @return: what the records it stores for the network database cost, in bytes.
        """

    def rpcCounts():
        """
        @return: how many network database requests it sent, by C{(kind, outcome)}: the kind's
            name (C{FIND_NODE}, ...) and C{answered} or C{failed}.
        """
