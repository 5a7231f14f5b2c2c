"""The collection tarball builds, installs into an empty collections path, and works there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _clean_env(collections: Path) -> dict[str, str]:
    """An environment that sees the installed copy only, never the checkout's ansible.cfg."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    cfg = collections.parent / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    env["ANSIBLE_CONFIG"] = str(cfg)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("collection")
    dist = tmp / "dist"
    target = tmp / "collections"
    target.mkdir()
    # Without the checkout's ansible.cfg: through its .collections/ path ansible-galaxy would
    # find firebreak.incident "already installed" and install nothing.
    env = _clean_env(target)
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "build", "--output-path", dist, ROOT],
        check=True,
        capture_output=True,
        cwd=tmp,
        env=env,
    )
    tarballs = list(dist.glob("firebreak-incident-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    assert tarballs[0].name == f"firebreak-incident-{version}.tar.gz"
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "install", "--no-deps", "-p", target, tarballs[0]],
        check=True,
        capture_output=True,
        cwd=tmp,
        env=env,
    )
    return target


def test_tarball_holds_the_collection_and_not_the_dev_tree(installed: Path) -> None:
    coll = installed / "ansible_collections" / "firebreak" / "incident"
    manifest = json.loads((coll / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["namespace"] == "firebreak"
    assert manifest["collection_info"]["name"] == "incident"
    files = {f["name"] for f in json.loads((coll / "FILES.json").read_text())["files"]}
    for shipped in ("meta/runtime.yml", "plugins", "README.md"):
        assert shipped in files
    for dev_only in (".venv", ".collections", "python", "tests/unit", "molecule", "benchmarks"):
        assert not any(f == dev_only or f.startswith(dev_only + "/") for f in files), dev_only


def test_installed_copy_lists_every_module(installed: Path, tmp_path: Path) -> None:
    expected = {
        f"firebreak.incident.{p.stem}"
        for p in (ROOT / "plugins" / "modules").glob("*.py")
        if p.stem != "__init__"
    }
    out = subprocess.run(
        [BIN / "ansible-doc", "-t", "module", "-l", "firebreak.incident", "--json"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_clean_env(installed),
    )
    listed = set(json.loads(out.stdout))
    assert listed == expected


def test_installed_copy_lists_every_filter(installed: Path, tmp_path: Path) -> None:
    filters = sorted(
        p.stem for p in (ROOT / "plugins" / "filter").glob("*.yml") if p.stem != "__init__"
    )
    out = subprocess.run(
        [BIN / "ansible-doc", "-t", "filter", "-l", "firebreak.incident", "--json"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_clean_env(installed),
    )
    listed = {name.rsplit(".", 1)[1] for name in json.loads(out.stdout)}
    assert listed == set(filters)
