"""Which backend runs a lab: the one module that knows both (backend.py knows neither).

``backend.py`` is the interface and the helpers every backend shares; ``processes.py`` and
``containers.py`` build on it; this module picks one by mode, so that nothing imports in a
circle (tests/unit/test_lab_layering.py checks it).
"""

from __future__ import annotations

from pathlib import Path

from firebreak.lab.backend import MODES, Backend, LabError, lab_dir, load_state, state_path
from firebreak.lab.containers import ContainersBackend
from firebreak.lab.processes import ProcessesBackend

_BY_MODE = {"processes": ProcessesBackend, "containers": ContainersBackend}


def get_backend(mode: str, d: Path | None = None) -> Backend:
    """The backend of ``mode`` for the lab in ``d`` (the default lab directory if None)."""
    cls = _BY_MODE.get(mode)
    if cls is None:
        raise LabError(f"unknown mode {mode!r} (have {MODES})")
    return cls(d or lab_dir())


def current_backend(d: Path | None = None) -> Backend:
    """The backend of the lab running in ``d``; LabError when none runs there."""
    st = load_state(d)
    if st is None:
        raise LabError(f"no lab is running (no {state_path(d)}); run `lab up` first")
    return get_backend(st["mode"], d)
