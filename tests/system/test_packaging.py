"""
``pip install -e .`` as a developer types it, and ``pip install .``, each give a working
``twistd phantom``: Twisted's plugin system finds twisted/plugins/phantom_plugin.py.

Each install goes into a fresh virtualenv that sees this one's dependencies through a .pth file
(so nothing but the build backend is fetched), and asks the plugin for its version from a
directory outside the checkout.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from phantom.version import PROTOCOL_VERSION

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class InstallTests(SynchronousTestCase):
    """The two ways the README names."""

    def install(self, *how, source=ROOT):
        venv = tempfile.mkdtemp(prefix="phantom-venv-")
        self.addCleanup(shutil.rmtree, venv, True)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        python = os.path.join(venv, "bin", "python")
        purelib = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True
        ).stdout.strip()
        with open(os.path.join(purelib, "dependencies.pth"), "w") as f:
            f.write(sysconfig.get_paths()["purelib"] + "\n")
        pip = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", *how]
        done = subprocess.run(pip, capture_output=True, text=True, cwd=source, timeout=300)
        if done.returncode != 0 and "No matching distribution" in done.stderr:
            raise self.skipTest(f"no package index to fetch the build backend from: {done.stderr.strip()[-200:]}")
        self.assertEqual(done.returncode, 0, done.stderr)
        asked = subprocess.run(
            [python, "-m", "twisted", "phantom", "--version"], capture_output=True, text=True, cwd=venv, timeout=60
        )
        self.assertEqual(asked.returncode, 0, asked.stdout + asked.stderr)
        self.assertIn(f"protocol {PROTOCOL_VERSION}", asked.stdout)

    def test_editable(self):
        """pip install -e . (setuptools' default editable mode)."""
        self.install("-e", ".")

    def test_regular(self):
        """pip install . (from a copy of the checkout: pip builds in the source tree)."""
        copy = tempfile.mkdtemp(prefix="phantom-src-")
        self.addCleanup(shutil.rmtree, copy, True)
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], capture_output=True, text=True, cwd=ROOT, check=True)
        for name in files.stdout.splitlines():
            if os.path.isfile(os.path.join(ROOT, name)):
                os.makedirs(os.path.dirname(os.path.join(copy, name)), exist_ok=True)
                shutil.copy2(os.path.join(ROOT, name), os.path.join(copy, name))
        self.install(".", source=copy)
