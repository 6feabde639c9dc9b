"""A service that listens on an endpoint and fails at startup when it cannot."""

from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred, succeed
from twisted.python.failure import Failure


class ListeningService(Service):
    """
    Listens in C{privilegedStartService}, before twistd drops privileges, and raises there
    when the endpoint cannot listen, so the node does not start half-way.

    @ivar port: the C{IListeningPort} while listening.
    """

    port = None

    def listener(self):
        """
        @return: C{(endpoint, factory)} to listen with.
        """
        raise NotImplementedError

    def privilegedStartService(self):
        super().privilegedStartService()
        endpoint, factory = self.listener()
        outcome = []
        endpoint.listen(factory).addBoth(outcome.append)
        if not outcome:
            raise RuntimeError(f"{endpoint!r} did not listen at once")
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        self.port = outcome[0]

    def startService(self):
        if self.port is None:
            self.privilegedStartService()
        super().startService()

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        return maybeDeferred(port.stopListening) if port is not None else succeed(None)
