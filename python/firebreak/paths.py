"""Where firebreak keeps what it generates: never inside the collection's source tree.

The state directory is ``$FIREBREAK_STATE_DIR``, else ``$XDG_STATE_HOME/firebreak``, else
``~/.local/state/firebreak``. Below it: ``incidents/`` (records, locks, post-mortem drafts,
``evidence/``) and ``labs/`` (one directory per lab: ``default`` for ``firebreak lab up``, the
incident id for a rehearsal's lab; ``labs/.index`` points at labs kept elsewhere through
``$FIREBREAK_LAB_DIR``). The collection's lookup ``firebreak.incident.state_dir`` gives the
same answer to a plain ``ansible-playbook`` run (a unit test holds the two together).
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    explicit = os.environ.get("FIREBREAK_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "firebreak"


def incidents_dir() -> Path:
    return state_dir() / "incidents"


def labs_dir() -> Path:
    return state_dir() / "labs"
