"""The client_identity_reuse figure (bench/identityreuse.py), held to its goal."""

from twisted.trial.unittest import SynchronousTestCase

from bench.identityreuse import clientIdentityReuse


class ClientIdentityReuseTests(SynchronousTestCase):
    def test_noPublishedApNoSharedIdentity(self):
        """
        Over 20 tunnels to 4 servers across two exit paths, no server sees the client's
        published AP-address, and no identity spans both exit paths: one identity per exit path.
        (Before exit APs: 20 tunnels showed the published AP-address, and its one identity
        spanned both exit paths.)
        """
        figures = clientIdentityReuse()
        self.assertEqual(figures["tunnels"], 20)
        self.assertEqual(figures["published_ap_seen"], 0)
        self.assertEqual(figures["shared_across_exit_paths"], 0)
        self.assertEqual(figures["distinct_identities"], 2)
