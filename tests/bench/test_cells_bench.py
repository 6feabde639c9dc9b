"""
The cell-size comparison over real TLS links in one process (L{bench.cells.tlsSizeCosts}), at a
tiny scale: real sockets on loopback are its point. Nothing here asserts a speed.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from bench import cells
from phantom.wire.tunnel import CELL_SIZE


class TLSSizeCostsTests(TestCase):
    timeout = 120

    async def test_figures(self):
        """
        Every route (the chain, a tunnel of each size) has one row a round of three positive
        figures, and the table gives each size's ratios to the chain's; the cell size is back
        to L{CELL_SIZE} afterwards.
        """
        results = await Deferred.fromCoroutine(cells.tlsSizeCosts(reactor, [CELL_SIZE, 4096], rounds=1, batches=1, mib=0.25, trips=3))
        self.assertEqual(sorted(results, key=str), sorted(["chain", CELL_SIZE, 4096], key=str))
        for rows in results.values():
            self.assertEqual(len(rows), 1)
            self.assertEqual(len(rows[0]), 3)
            self.assertTrue(all(figure > 0 for figure in rows[0]))
        lines = cells.tlsSizeTable(results)
        self.assertEqual(len(lines), 4)
        self.assertIn("4096: ", lines[3])
        self.assertEqual(cells.wire.CELL_SIZE, CELL_SIZE)
