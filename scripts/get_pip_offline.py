"""Offline stand-in for ansible-test's pip bootstrap: ensurepip, then pip install.

ansible-test downloads get-pip from a host this machine cannot reach; it looks for a cached
copy first, and scripts/bootstrap puts this file there.
"""

import os
import subprocess
import sys

env = dict(os.environ)  # ensurepip blanks pip's config in its own process
subprocess.check_call([sys.executable, "-m", "ensurepip"], env=env)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args], env=env))
