"""The shared address vocabulary: host:port, contacts, the 16-byte address form."""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import AddressError, Contact, addressBytes, formatAddress, formatHostPort, hostOf, parseAddress, parseContact, parseHostPort


class HostPortTests(SynchronousTestCase):
    """C{HOST:PORT} in both address families."""

    def test_ipv4(self):
        self.assertEqual(parseHostPort("127.0.0.1:7402"), ("127.0.0.1", 7402))

    def test_ipv6(self):
        self.assertEqual(parseHostPort("[fd00::1]:7402"), ("fd00::1", 7402))

    def test_malformed(self):
        """Names, missing ports and out-of-range ports are refused with a clear error."""
        for text in ["localhost:7402", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", ":7402", "[::1]:x"]:
            self.assertRaises(AddressError, parseHostPort, text)

    @given(st.ip_addresses(), st.integers(1, 65535))
    def test_roundTrip(self, address, port):
        """Formatting and parsing are inverses."""
        self.assertEqual(parseHostPort(formatHostPort(str(address), port)), (str(address), port))

    @given(st.text(max_size=40))
    def test_anyTextParsesOrIsRefused(self, text):
        """Arbitrary text gives an address or a AddressError, nothing else."""
        try:
            parseContact(text)
        except AddressError:
            pass

    def test_pinnedContact(self):
        """C{NODEID@HOST:PORT} pins the node id."""
        contact = parseContact("ab" * 32 + "@127.0.0.2:7402")
        self.assertEqual(contact, Contact("127.0.0.2", 7402, b"\xab" * 32))
        self.assertEqual(str(contact), "ab" * 32 + "@127.0.0.2:7402")
        self.assertRaises(AddressError, parseContact, "abcd@127.0.0.2:7402")


class AddressBytesTests(SynchronousTestCase):
    """The 16-byte address form of the wire."""

    @given(st.ip_addresses())
    def test_roundTrip(self, address):
        """Every IPv4 and IPv6 address survives its 16-byte form (an IPv4-mapped one as IPv4)."""
        packed = addressBytes(str(address))
        self.assertEqual(len(packed), 16)
        self.assertEqual(hostOf(packed), str(getattr(address, "ipv4_mapped", None) or address))

    @given(st.text(max_size=40))
    def test_anyTextIsAnAddressOrRefused(self, text):
        """Arbitrary text gives 16 bytes or an AddressError, nothing else."""
        for parse in (addressBytes, parseAddress):
            try:
                self.assertEqual(len(parse(text)), 16)
            except AddressError:
                pass

    def test_apAddressText(self):
        """AP-addresses are written and read as IPv6 text."""
        self.assertEqual(formatAddress(parseAddress("fd00::1")), "fd00::1")
        self.assertRaises(AddressError, parseAddress, "127.0.0.1")
