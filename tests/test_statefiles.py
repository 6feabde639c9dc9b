"""Files in the data directory, written atomically and durably."""

import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from phantom import statefiles
from phantom.statefiles import writeAtomically


class WriteAtomicallyTests(SynchronousTestCase):
    def setUp(self):
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "state.json")

    def test_replaces(self):
        """The file holds the new content, owner-only, and nothing else is left in the directory."""
        writeAtomically(self.path, b"old")
        writeAtomically(self.path, b"new")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"new")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(os.listdir(self.directory), ["state.json"])

    def test_fsyncedFileThenDirectory(self):
        """The temporary file is fsynced before the rename, the directory after it."""
        synced = []
        realFsync = os.fsync

        def fsync(fd):
            synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), os.path.exists(self.path)))
            realFsync(fd)

        self.patch(statefiles.os, "fsync", fsync)
        writeAtomically(self.path, b"content")
        self.assertEqual(synced, [(False, False), (True, True)])

    def test_failureLeavesTheOldFile(self):
        """A write that fails leaves the old file as it was and no temporary file."""
        writeAtomically(self.path, b"old")

        def full(fd):
            raise OSError(28, "No space left on device")

        self.patch(statefiles.os, "fsync", full)
        self.assertRaises(OSError, writeAtomically, self.path, b"new")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"old")
        self.assertEqual(os.listdir(self.directory), ["state.json"])

    def test_directoryInTheWay(self):
        """A directory where the file should be: OSError, and no temporary file is left."""
        os.mkdir(self.path)
        self.assertRaises(OSError, writeAtomically, self.path, b"new")
        self.assertEqual(os.listdir(self.directory), ["state.json"])
