"""
The files a node keeps in its data directory: written atomically and durably, so that a crash
or a full disk leaves either the old file or the new one, never a part of either.
"""

import os
import tempfile


def writeAtomically(path, content, mode=0o600):
    """
    Replace the file at C{path} with C{content}: a temporary file beside it is written, flushed
    and fsynced, renamed over C{path}, and the directory is fsynced so that the rename lasts.

    @param content: bytes.
    @param mode: the new file's permissions (the owner's only by default).
    @raise OSError: it could not be written; C{path} is then as it was, and no temporary file
        is left behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _fsyncDirectory(directory)


def _fsyncDirectory(directory):
    """Make the entries of C{directory} (a rename into it) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
