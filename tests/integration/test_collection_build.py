"""The collection tarball builds, installs into an empty collections path, and works there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
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


def _build(root: Path, dist: Path, env: dict[str, str] | None = None) -> Path:
    """`make build`: scripts/build-collection builds from the tracked files, then checks."""
    out = subprocess.run(
        [
            sys.executable,
            ROOT / "scripts" / "build-collection",
            "--root",
            root,
            "--output-path",
            dist,
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**(env or os.environ), "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("collection")
    dist = tmp / "dist"
    target = tmp / "collections"
    target.mkdir()
    # Without the checkout's ansible.cfg: through its .collections/ path ansible-galaxy would
    # find firebreak.incident "already installed" and install nothing.
    env = _clean_env(target)
    _build(ROOT, dist, env)
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


def _members(tarball: Path) -> set[str]:
    with tarfile.open(tarball) as tar:
        return {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}


def _checkout_copy(dest: Path) -> Path:
    """A git checkout holding this checkout's tracked files as they are in the working tree."""
    files = subprocess.run(
        ["git", "-C", ROOT, "ls-files", "-z"], check=True, capture_output=True, text=True
    ).stdout.split("\0")
    for rel in filter(None, files):
        src, dst = ROOT / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, dst)
    git = ["git", "-C", dest, "-c", "user.email=t@firebreak", "-c", "user.name=t"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], check=True)
    return dest


def test_build_ships_only_tracked_collection_files_whatever_the_tree_holds(tmp_path: Path) -> None:
    """Records, evidence, labs and disk images written into a checkout (an operator's state
    dir pointed there, an old version's defaults) never reach the tarball."""
    clone = _checkout_copy(tmp_path / "clone")
    junk = [
        "incidents/REH-fm003_corruption-0123abcd.json",
        "incidents/REH-fm003_corruption-0123abcd.lock",
        "incidents/evidence/REH-1/replica-2/log.dat",
        ".lab-REH-1/containers/disks/replica-3.img",
        "roles/triage/files/stray.img",
        "playbooks/incidents/REH-2.json",
        "docs/postmortem-REH-2.md",
    ]
    for rel in junk:
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        (clone / rel).write_text("generated\n")
    tarball = _build(clone, tmp_path / "dist")
    members = _members(tarball)
    assert members, tarball
    tracked = set(
        subprocess.run(
            ["git", "-C", clone, "ls-files"], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    assert members - {"MANIFEST.json", "FILES.json"} <= tracked
    assert not members & set(junk)
    assert "playbooks/fm003_corruption.yml" in members


def test_check_refuses_a_tarball_holding_what_is_not_the_collections(tmp_path: Path) -> None:
    good = _build(ROOT, tmp_path / "dist")
    bad = tmp_path / "bad.tar.gz"
    record = tmp_path / "REH-1.json"
    record.write_text("{}")
    with tarfile.open(good) as src, tarfile.open(bad, "w:gz") as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        dst.add(record, arcname="incidents/REH-1.json")
    res = subprocess.run(
        [sys.executable, ROOT / "scripts" / "build-collection", "--check", bad],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 1, res
    assert "incidents/REH-1.json" in res.stderr
    ok = subprocess.run(
        [sys.executable, ROOT / "scripts" / "build-collection", "--check", good],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
