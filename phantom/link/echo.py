"""ECHO links: every DATA frame goes back unchanged, for liveness and round-trip probes."""

from zope.interface import implementer

from phantom.link.interfaces import ILinkHandler


@implementer(ILinkHandler)
class EchoHandler:
    """Sends each frame of its link back on the same link."""

    def __init__(self, link):
        self._link = link

    def frameReceived(self, payload):
        self._link.sendFrame(payload)

    def linkClosed(self, reason):
        pass
