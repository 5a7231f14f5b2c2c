"""The collection's standard-library module_utils, loaded by the wrapper (one implementation).

A ``plugins/module_utils/<name>.py`` of the collection is loaded by file path from the
repository root (an editable install or a checkout) or, failing that, imported from an
installed ``firebreak.incident`` collection.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_UTILS_DIR = REPO_ROOT / "plugins" / "module_utils"


def module_utils(name: str) -> ModuleType:
    """``plugins/module_utils/<name>.py`` as a module (loaded once)."""
    module_name = f"firebreak._module_utils_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = MODULE_UTILS_DIR / f"{name}.py"
    if path.is_file():
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(
            f"ansible_collections.firebreak.incident.plugins.module_utils.{name}"
        )
    except ImportError as exc:  # pragma: no cover - only outside a checkout
        raise ImportError(
            f"the firebreak.incident collection is neither at {REPO_ROOT} nor installed: {exc}"
        ) from exc
