"""The owner's attempt at a path as a machine: events in, actions out, no links and no clock."""

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from phantom.path.owner import (
    ArmTimer,
    Await,
    BuildState,
    Built,
    Close,
    Connect,
    Failed,
    Leg,
    ROUND_ONE_TRIPS,
    OwnerBuild,
    StopTimer,
)
from phantom.path.relay import encodeArray, parseArray
from phantom.wire.link import Purpose
from phantom.wire.path import SLOT_SIZE
from tests.path.test_circle import NOW, OWNER_CONTACT, Build, Network

CLOSE_ALL = [Close(Leg.OUT), Close(Leg.BACK), Close(Leg.X0)]


class Circle:
    """The participants of a simulated build, passing the arrays the owner sends round the circle."""

    def __init__(self, build):
        self.build = build

    def roundTrip(self, send):
        slots = send.slots
        if send.round == 1:
            host, nodeId, linkId = OWNER_CONTACT.host, OWNER_CONTACT.nodeId, self.build.construction.linkIds[0]
            for hop, participant in zip(self.build.plan.circle, self.build.participants):
                forward = participant.firstRound(slots, linkId, host, nodeId)
                host, nodeId, slots, linkId = hop.record.host, hop.record.nodeId, forward.slots, forward.linkId
        else:
            for participant in self.build.participants:
                forward, _ = participant.secondRound(slots, NOW)
                slots = forward.slots
        return encodeArray(send.round, slots)


class Times:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class OwnerBuildTests(SynchronousTestCase):
    def setUp(self):
        self.network = Network(20)

    def machine(self, seed=0, reversed=False):
        self.build = Build(self.network, seed=seed, reversed=reversed)
        self.circle = Circle(self.build)
        self.times = Times()
        return OwnerBuild(self.build.construction, 5.0, self.times, {"plan": 0.5})

    def throughRoundOne(self, machine):
        """Start, open both SETUP links, and bring round 1 back. @return: the round-2 actions."""
        first = self.build.construction.round(1)
        actions = machine.start()
        self.assertEqual(
            actions,
            [
                Await(Leg.BACK, Purpose.SETUP, first.returnLinkId, first.returnFrom.host, first.returnFrom.nodeId),
                Connect(Leg.OUT, Purpose.SETUP, first.first, first.linkId),
            ],
        )
        [send] = machine.linkOpened(Leg.OUT)
        self.assertEqual((send.round, machine.state), (1, BuildState.ROUND1_OUT))
        self.assertEqual(machine.linkOpened(Leg.BACK), [ArmTimer(5.0)])
        self.assertEqual(machine.state, BuildState.ROUND1_BACK)
        self.times.now = 1.0
        return machine.arrayReceived(self.circle.roundTrip(send))

    def test_connectToX0(self):
        """
        Not reversed: the owner opens x0's link as an X-node opens its successor's, with round 2
        (issue 12, finding 4: before, only once round 2 had come all the way back), and sends
        round 2 after as many hops of round 1's pace as a gap of the path has Y-nodes beyond one.
        """
        machine = self.machine(reversed=False)
        how, x0, linkId = self.build.construction.ownerLink()
        [connect, timer, later] = self.throughRoundOne(machine)
        self.assertEqual(connect, Connect(Leg.X0, Purpose.PATH, x0, linkId))
        hop = 1.0 / (ROUND_ONE_TRIPS * (len(self.build.plan.circle) + 1))
        self.assertIn(round(later.seconds / hop), [gap - 1 for gap in self.build.plan.gaps])
        self.assertEqual(timer, ArmTimer(5.0 + later.seconds))
        self.assertEqual(machine.linkOpened(Leg.X0), [])
        [send, timer] = machine.sendDue()
        self.assertEqual((send.round, timer, machine.state), (2, ArmTimer(5.0), BuildState.ROUND2))
        self.assertEqual(machine.sendDue(), [])
        self.times.now = 3.0
        self.assertEqual(machine.arrayReceived(self.circle.roundTrip(send)), [StopTimer(), Close(Leg.OUT), Close(Leg.BACK), Built()])
        self.assertEqual(machine.state, BuildState.BUILT)

    def test_x0LinkAfterRoundTwo(self):
        """x0's link opens after round 2 is back: then the path is built."""
        machine = self.machine(reversed=False)
        self.throughRoundOne(machine)
        [send, _] = machine.sendDue()
        self.times.now = 3.0
        self.assertEqual(machine.arrayReceived(self.circle.roundTrip(send)), [StopTimer()])
        self.assertEqual(machine.state, BuildState.LINKING)
        self.times.now = 3.5
        self.assertEqual(machine.linkOpened(Leg.X0), [StopTimer(), Close(Leg.OUT), Close(Leg.BACK), Built()])
        self.assertEqual(machine.phases, {"plan": 0.5, "round1": 1.0, "round2": 2.0, "link": 0.5})

    def test_nothingBackBeforeRoundTwo(self):
        """An array back while round 2 waits to go out is refused."""
        machine = self.machine(reversed=False)
        self.throughRoundOne(machine)
        actions = machine.arrayReceived(encodeArray(2, []))
        self.assertIsInstance(actions[-1], Failed)
        self.assertEqual(machine.sendDue(), [])

    def test_awaitX0(self):
        """Reversed: x0's link is awaited from round 2 on, and may arrive before round 2 is back."""
        machine = self.machine(reversed=True)
        how, x0, linkId = self.build.construction.ownerLink()
        [awaiting, send, timer] = self.throughRoundOne(machine)
        self.assertEqual(awaiting, Await(Leg.X0, Purpose.PATH, linkId, x0.host, x0.nodeId))
        self.assertEqual(machine.linkOpened(Leg.X0), [])
        self.assertEqual(machine.arrayReceived(self.circle.roundTrip(send)), [StopTimer(), Close(Leg.OUT), Close(Leg.BACK), Built()])

    def test_linkClosingOutInRoundTwoIsNoNews(self):
        """After round 1 the first node closes its SETUP links as it is done: that is no failure."""
        machine = self.machine()
        self.throughRoundOne(machine)
        [send, _] = machine.sendDue()
        self.assertEqual(machine.linkClosed(Leg.OUT), [])
        self.assertEqual(machine.state, BuildState.ROUND2)

    def assertFailed(self, actions, machine, why):
        self.assertEqual(actions[:-1], [StopTimer()] + CLOSE_ALL)
        self.assertIsInstance(actions[-1], Failed)
        self.assertIn(why, actions[-1].why)
        self.assertEqual(machine.state, BuildState.FAILED)
        # Whatever happens later changes nothing, and links that open now are closed.
        self.assertEqual(machine.arrayReceived(b"late"), [])
        self.assertEqual(machine.timedOut(), [])
        self.assertEqual(machine.linkClosed(Leg.BACK), [])
        self.assertEqual(machine.linkOpened(Leg.X0), [Close(Leg.X0)])

    def test_tamperedReturnFails(self):
        """A round-1 array that comes back other than predicted fails the attempt."""
        machine = self.machine()
        machine.start()
        [send] = machine.linkOpened(Leg.OUT)
        machine.linkOpened(Leg.BACK)
        slots = parseArray(self.circle.roundTrip(send), 1) + [bytes(SLOT_SIZE)]
        why = "SetupRejected: the round-1 array came back other than predicted"
        self.assertFailed(machine.arrayReceived(encodeArray(1, slots)), machine, why)

    def test_malformedAndWrongRound(self):
        """Bytes that are no array, or an array of the other round, fail the attempt."""
        for payload, why in [(b"\x01garbage", "SetupRejected"), (encodeArray(2, []), "a round-2 array where round 1 was due")]:
            machine = self.machine()
            machine.start()
            machine.linkOpened(Leg.OUT)
            machine.linkOpened(Leg.BACK)
            self.assertFailed(machine.arrayReceived(payload), machine, why)

    @settings(max_examples=100, deadline=None)
    @given(st.binary(max_size=2 * SLOT_SIZE + 8))
    def test_anyBytesBackFail(self, payload):
        """
        Whatever bytes come back in round 1 fail the attempt (the array predicted holds more
        slots than these bytes can).
        """
        machine = self.machine()
        machine.start()
        machine.linkOpened(Leg.OUT)
        machine.linkOpened(Leg.BACK)
        self.assertFailed(machine.arrayReceived(payload), machine, "SetupRejected")

    def test_roundTwoTampered(self):
        """A round-2 array that comes back other than predicted fails the attempt."""
        machine = self.machine()
        self.throughRoundOne(machine)
        [send, _] = machine.sendDue()
        self.assertFailed(machine.arrayReceived(encodeArray(2, [])), machine, "round-2 array came back other than predicted")

    def test_gaveUpInRoundOne(self):
        """In round 1, either SETUP link closing means a node gave up: fail at once."""
        for leg, why in [(Leg.OUT, "a node of the circle gave up"), (Leg.BACK, "the link closed")]:
            machine = self.machine()
            machine.start()
            machine.linkOpened(Leg.OUT)
            machine.linkOpened(Leg.BACK)
            self.assertFailed(machine.linkClosed(leg), machine, why)

    def test_backClosedInRoundTwo(self):
        """In round 2 the link back closing before the array came fails the attempt."""
        machine = self.machine()
        self.throughRoundOne(machine)
        self.assertFailed(machine.linkClosed(Leg.BACK), machine, "LinkFailed")

    def test_timeout(self):
        """An array that does not come back in time fails the attempt."""
        machine = self.machine()
        self.throughRoundOne(machine)
        self.assertFailed(machine.timedOut(), machine, "TimeoutError: the round-2 array did not come back within 5 s")

    def test_linkFailed(self):
        """A link that cannot be opened or does not arrive fails the attempt, saying why."""
        machine = self.machine()
        machine.start()
        self.assertFailed(machine.linkFailed(Leg.OUT, "LinkFailed: nobody listens"), machine, "nobody listens")

    def test_backBeforeOut(self):
        """The link back may open before the link out: round 1 is then awaited on it at once."""
        machine = self.machine()
        machine.start()
        self.assertEqual(machine.linkOpened(Leg.BACK), [])
        [send, timer] = machine.linkOpened(Leg.OUT)
        self.assertEqual((send.round, timer, machine.state), (1, ArmTimer(5.0), BuildState.ROUND1_BACK))

    def test_arrayBeforeRoundOneWentOut(self):
        """An array on the link back before round 1 went out is a misbehaviour."""
        machine = self.machine()
        machine.start()
        machine.linkOpened(Leg.BACK)
        self.assertFailed(machine.arrayReceived(encodeArray(1, [])), machine, "before round 1 went out")


class GoneTests(SynchronousTestCase):
    """
    Which failures name a node known to be gone (issue 16): only x0's link failing once x0 alone
    can be why; every other failure is silent about who gave up.
    """

    setUp = OwnerBuildTests.setUp
    machine = OwnerBuildTests.machine
    throughRoundOne = OwnerBuildTests.throughRoundOne

    def x0(self):
        return self.build.plan.adjacent.nodeId

    def test_x0CannotBeReached(self):
        """Not reversed: the owner's link to x0, which passed round 1 on, cannot be opened: x0 is gone."""
        machine = self.machine(reversed=False)
        self.throughRoundOne(machine)
        [*_, failed] = machine.linkFailed(Leg.X0, "LinkFailed: nobody listens there")
        self.assertEqual(failed, Failed("LinkFailed: nobody listens there", (self.x0(),)))

    def test_x0NeverLinksOnceRoundTwoIsBack(self):
        """Reversed: round 2 came back through x0, and x0's link never came: x0 is gone."""
        machine = self.machine(reversed=True)
        [_, send, _] = self.throughRoundOne(machine)
        self.assertEqual(machine.arrayReceived(self.circle.roundTrip(send)), [StopTimer()])
        [*_, failed] = machine.linkFailed(Leg.X0, "TimeoutError: no link")
        self.assertEqual(failed.gone, (self.x0(),))

    def test_x0NotBlamedBeforeRoundTwoIsBack(self):
        """Reversed: x0's link not coming while round 2 is out may be any node's doing."""
        machine = self.machine(reversed=True)
        self.throughRoundOne(machine)
        [*_, failed] = machine.linkFailed(Leg.X0, "TimeoutError: no link")
        self.assertEqual(failed.gone, ())

    def test_silentFailures(self):
        """A node of the circle giving up, or a round timing out, names nobody."""
        machine = self.machine()
        machine.start()
        machine.linkOpened(Leg.OUT)
        [*_, failed] = machine.linkClosed(Leg.OUT)
        self.assertEqual(failed.gone, ())
        machine = self.machine()
        self.throughRoundOne(machine)
        [*_, failed] = machine.timedOut()
        self.assertEqual(failed.gone, ())
