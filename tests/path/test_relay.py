"""A node's part in others' paths: the setup as a machine, its driver, and the relayed path."""

from types import SimpleNamespace

from hypothesis import given, settings, strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import Contact
from phantom.path.interfaces import Side
from phantom.path.plan import PathShape, Y
from phantom.path.relay import ConnectNext, Leave, Rewire, SetupMachine, SetupState, encodeArray, relayPath
from phantom.path.participant import Rewiring
from phantom.wire.link import Purpose
from phantom.wire.path import SLOT_SIZE
from tests.link.helpers import LogCollector
from tests.path.helpers import MemoryPathNetwork
from tests.path.test_circle import NOW, OWNER_CONTACT, Build, Network


def linkFrom(contact, linkId):
    """What a machine reads of the SETUP link its array came over."""
    return SimpleNamespace(linkId=linkId, peer=SimpleNamespace(host=contact.host), nodeId=contact.nodeId)


class SetupMachineTests(SynchronousTestCase):
    def setUp(self):
        self.build = Build(Network(20), seed=2)
        self.first = self.build.construction.round(1)

    def machines(self):
        """A machine for every node of the circle, each with the link its predecessor opens."""
        contacts = [OWNER_CONTACT] + self.build.contacts()
        linkIds = self.build.construction.linkIds
        return [
            SetupMachine(participation, linkFrom(contacts[index], linkIds[index]), lambda: NOW)
            for index, participation in enumerate(self.build.participants)
        ]

    def test_roundTrip(self):
        """
        Round 1 goes on over a link opened to the next node of the circle; round 2 over the same
        link; then X-nodes rewire and every node leaves its SETUP links.
        """
        machines = self.machines()
        contacts = self.build.contacts() + [OWNER_CONTACT]
        payload = encodeArray(1, self.first.slots)
        for index, machine in enumerate(machines):
            [connect] = machine.arrayReceived(payload)
            self.assertEqual(connect, ConnectNext(contacts[index + 1], self.build.construction.linkIds[index + 1]))
            self.assertEqual(machine.state, SetupState.FORWARDING)
            [send] = machine.nextLinkOpened()
            self.assertEqual((send.round, machine.state), (1, SetupState.ROUND2))
            payload = encodeArray(1, send.slots)
        self.assertEqual(payload, encodeArray(1, self.first.expectedReturn))
        second = self.build.construction.round(2)
        payload = encodeArray(2, second.slots)
        rewired = 0
        for hop, machine in zip(self.build.plan.circle, machines):
            actions = machine.arrayReceived(payload)
            send, leave = actions[:2]
            self.assertEqual((send.round, leave), (2, Leave("round 2 passed on")))
            if hop.role == Y:
                self.assertEqual(len(actions), 2)
            else:
                [rewire] = actions[2:]
                self.assertIsInstance(rewire, Rewire)
                self.assertEqual(rewire.rewiring.keySeed, self.build.construction.keySeeds[hop.record.nodeId])
                rewired += 1
            self.assertEqual(machine.state, SetupState.FINISHED)
            self.assertEqual(machine.linkClosed(Side.PREVIOUS), [])
            payload = encodeArray(2, send.slots)
        self.assertEqual(rewired, 3)
        self.assertEqual(payload, encodeArray(2, second.expectedReturn))

    def assertLeft(self, actions, machine, why, refused):
        self.assertEqual(actions, [Leave(why, refused)])
        self.assertEqual(machine.state, SetupState.LEFT)
        self.assertEqual(machine.arrayReceived(encodeArray(1, self.first.slots)), [])
        self.assertEqual(machine.nextLinkOpened(), [])
        self.assertEqual(machine.linkClosed(Side.NEXT), [])
        self.assertEqual(machine.timedOut(), [])

    def test_refusals(self):
        """Bytes that are no array, an array of the wrong round, or one not for the node are refused."""
        cases = [
            (b"\x01\x00", "malformed setup array"),
            (encodeArray(2, self.first.slots), "a round-2 array where round 1 was due"),
            (encodeArray(1, [bytes(SLOT_SIZE)] * 3), "no slot of this node in the array"),
        ]
        for payload, why in cases:
            machine = self.machines()[0]
            [leave] = machine.arrayReceived(payload)
            self.assertTrue(leave.refused)
            self.assertIn(why, leave.why)
            self.assertLeft([leave], machine, leave.why, True)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=2 * SLOT_SIZE + 8))
    def test_anyBytesRefused(self, payload):
        """Whatever bytes come first, the machine refuses them or forwards round 1; it never raises."""
        machine = self.machines()[0]
        actions = machine.arrayReceived(payload)
        if payload == encodeArray(1, self.first.slots):
            return
        [leave] = actions
        self.assertTrue(leave.refused)
        self.assertEqual(machine.state, SetupState.LEFT)

    def test_secondRoundTooEarly(self):
        """Round 2 while round 1 is still being passed on is refused."""
        machine = self.machines()[0]
        machine.arrayReceived(encodeArray(1, self.first.slots))
        actions = machine.arrayReceived(encodeArray(2, self.build.construction.round(2).slots))
        self.assertLeft(actions, machine, "round 2 came before round 1 was passed on", True)

    def test_givingUp(self):
        """Either link closing, the next link failing, time running out: the node leaves."""
        for event, why in [
            (lambda m: m.linkClosed(Side.PREVIOUS), "the link closed"),
            (lambda m: m.linkClosed(Side.NEXT), "the next node closed the link"),
            (lambda m: m.nextLinkFailed("LinkFailed: nobody listens"), "LinkFailed: nobody listens"),
            (lambda m: m.timedOut(), "round 2 never came"),
            (lambda m: m.giveUp("the node is stopping"), "the node is stopping"),
        ]:
            machine = self.machines()[0]
            machine.arrayReceived(encodeArray(1, self.first.slots))
            machine.nextLinkOpened()
            self.assertLeft(event(machine), machine, why, False)


class SetupParticipantTests(SynchronousTestCase):
    def test_badInput(self):
        """
        A SETUP link carrying a malformed array, or one with no slot for the node, is closed with
        one warning naming the peer; the node goes on building and taking part in paths.
        """
        network = MemoryPathNetwork(self, 10)
        target = network.nodes[4]
        logs = LogCollector(self, "phantom.path")
        stranger = network.links.linkService()
        foreign = encodeArray(1, [bytes(SLOT_SIZE)])
        for linkId, payload in [(b"\x01" * 16, b"bad"), (b"\x02" * 16, foreign)]:
            link = network.run(stranger.connect(*target.address, Purpose.SETUP, linkId, target.nodeId))
            link.attach(SimpleNamespace(frameReceived=lambda payload: None, linkClosed=lambda reason: None))
            link.sendFrame(payload)
            network.settle()
            self.assertTrue(link.closed)
        self.assertEqual(len(logs.lines), 2)
        for line in logs.lines:
            self.assertIn("refused", line)
            self.assertIn(stranger.address[0], line)
        self.assertEqual(target.paths.helping, 0)
        path = network.run(Deferred.fromCoroutine(network.nodes[0].paths.build("exit", PathShape(2, 3))))
        self.assertEqual(len(path.nodes), 2)

    def test_timesOut(self):
        """A setup whose round 2 never comes is left after twice the round timeout."""
        network = MemoryPathNetwork(self, 4)
        target = network.nodes[1]
        stranger = network.links.linkService()
        link = network.run(stranger.connect(*target.address, Purpose.SETUP, b"\x03" * 16, target.nodeId))
        network.settle()
        self.assertEqual(target.paths.helping, 1)
        network.clock.advance(2 * 5.0 - 0.1)
        self.assertEqual(target.paths.helping, 1)
        network.clock.advance(0.1)
        network.settle()
        self.assertEqual(target.paths.helping, 0)
        self.assertTrue(link.closed)


class RelayedPathTests(SynchronousTestCase):
    def setUp(self):
        self.network = MemoryPathNetwork(self, 3)
        self.me, self.before, self.after = self.network.nodes
        self.frames = []
        self.relaying = {}
        self.published = []

    def relay(self, routingEntry=None):
        rewiring = Rewiring(
            Contact(*self.before.address, self.before.nodeId), b"\x0a" * 16,
            Contact(*self.after.address, self.after.nodeId), b"\x0b" * 16,
            b"\x05" * 32, 16, False, routingEntry,
        )
        relayed = relayPath(
            rewiring, self.me.links, self.relaying, lambda *frame: self.frames.append(frame), 10.0, self.publish
        )
        return relayed

    async def publish(self, entry):
        self.published.append(entry)

    def test_linksBothSidesAndRelaysFrames(self):
        """The previous node's link is awaited, the next one opened; frames say their side."""
        relayed = self.relay()
        self.assertEqual(self.relaying, {(b"\x0a" * 16, b"\x0b" * 16): relayed})
        previous = self.network.run(self.before.links.connect(*self.me.address, Purpose.PATH, b"\x0a" * 16, self.me.nodeId))
        self.network.settle()
        self.assertEqual(relayed.sides(), [Side.PREVIOUS, Side.NEXT])
        self.assertIsNotNone(relayed.previous)
        self.assertIsNotNone(relayed.next)
        previous.sendFrame(b"towards T")
        self.network.settle()
        self.assertEqual(self.frames, [(relayed, Side.PREVIOUS, b"towards T")])
        self.assertEqual(self.published, [])

    def test_oneSideGoneTearsDown(self):
        """When one link closes, the other is closed and the path forgotten."""
        relayed = self.relay()
        previous = self.network.run(self.before.links.connect(*self.me.address, Purpose.PATH, b"\x0a" * 16, self.me.nodeId))
        self.network.settle()
        gone = []
        relayed.onGone(lambda: gone.append(True))
        previous.close()
        self.network.settle()
        self.assertEqual((gone, self.relaying), ([True], {}))
        self.assertTrue(relayed.next.closed)

    def test_previousFromAnotherNode(self):
        """
        A PATH link with the right link id from the previous node's host but another node id is
        refused; the previous node's own link is still taken.
        """
        relayed = self.relay()
        impostor = self.network.links.linkService(host=self.before.address[0], port=self.before.address[1] + 1)
        refused = self.network.run(impostor.connect(*self.me.address, Purpose.PATH, b"\x0a" * 16, self.me.nodeId))
        self.network.settle()
        self.assertTrue(refused.closed)
        self.assertIsNone(relayed.previous)
        self.network.run(self.before.links.connect(*self.me.address, Purpose.PATH, b"\x0a" * 16, self.me.nodeId))
        self.network.settle()
        self.assertEqual(relayed.previous.nodeId, self.before.nodeId)

    def test_previousNeverComes(self):
        """A previous node that never opens its link: the path is torn down when the wait ends."""
        relayed = self.relay()
        self.network.clock.advance(10.0)
        self.network.settle()
        self.assertTrue(relayed.gone)
        self.assertEqual(self.relaying, {})

    def test_routingEntryPublished(self):
        """T of an entry path publishes its routing entry."""
        entry = object()
        self.relay(routingEntry=entry)
        self.assertEqual(self.published, [entry])
