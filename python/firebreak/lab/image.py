"""Build the firebreak lab's systemd container image offline, cached by its recipe.

The image ``localhost/firebreak-lab:<recipe-hash>`` (also tagged ``:latest``) is a Debian
bookworm root filesystem made by ``debootstrap --variant=minbase`` from the Debian mirror that
apt uses (no container registry is reachable), with:

- systemd as PID 1 (``CMD ["/sbin/init"]``; containers run with ``--systemd=always``);
- the Python packages the replica needs (pure-python / manylinux wheels installed from the host
  with pip into ``/usr/local/lib/python3.11/dist-packages``: containers need no network beyond
  their own podman network);
- ``kimberlite-vsr.service``, ``node-exporter.service`` and ``kimberlite-timesync.service`` (all
  enabled; the second serves the container's disk and load on :9100,
  :mod:`firebreak.kimberlite.node_exporter`; the third is the replica's time-sync daemon,
  :mod:`firebreak.kimberlite.timesync`) and the ``/usr/local/bin/kimberlite-admin`` and
  ``kimberlite-timesync`` wrappers from ``firebreak/kimberlite/systemd/``.

The firebreak source itself is NOT baked in: the lab bind-mounts the checkout's ``python/``
read-only at ``/opt/firebreak/python`` and the unit sets ``PYTHONPATH``, so code changes need no
rebuild.

Cache: the recipe hash covers the package lists, the unit, the wrapper and ``RECIPE_VERSION``.
The debootstrapped root filesystem (the slow part, ~70 s) is kept in
``<cache>/rootfs-<base-hash>`` (default cache ``/var/cache/firebreak``, env
``FIREBREAK_CACHE_DIR``), keyed by the Debian package list only: a change to the unit, the
wrapper or the Python packages copies it, re-customizes and re-imports (~10 s). An image whose
tag already exists is not rebuilt, so re-running on a built machine takes under a second.

Run: ``python3 -m firebreak.lab.image [--force] [--print-ref]`` (``scripts/build-lab-image``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

#: Bump to force a new debootstrap (the customization steps are hashed by their source).
RECIPE_VERSION = 1
IMAGE_NAME = "localhost/firebreak-lab"
SUITE = "bookworm"
LABEL = "firebreak.lab"

DEBIAN_PACKAGES = (
    "python3",
    "systemd",
    "systemd-sysv",
    "dbus",
    "curl",
    "iproute2",
    "iputils-ping",
    "procps",
    "nftables",
    "libfaketime",
    "faketime",
    "ca-certificates",
)
#: Installed from the host with pip (pinned: the hash must describe the image).
PYTHON_PACKAGES = ("prometheus_client==0.26.0", "PyYAML==6.0.4")
SITE_PACKAGES = "usr/local/lib/python3.11/dist-packages"

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "kimberlite" / "systemd"
UNIT_NAME = "kimberlite-vsr.service"
NODE_EXPORTER_UNIT = "node-exporter.service"
TIMESYNC_UNIT = "kimberlite-timesync.service"
#: The units installed and enabled at boot.
UNITS = (UNIT_NAME, NODE_EXPORTER_UNIT, TIMESYNC_UNIT)
ADMIN_WRAPPER = "kimberlite-admin"
#: The commands in /usr/local/bin (the admin CLI, the time-sync daemon's chronyc-like CLI).
WRAPPERS = (ADMIN_WRAPPER, "kimberlite-timesync")

#: What lab-recipes.md says podman needs on this kind of machine.
CONTAINERS_CONF = Path("/etc/containers/containers.conf")
CONTAINERS_CONF_TEXT = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


class ImageError(RuntimeError):
    """The image cannot be built, or podman cannot run here."""


def log(msg: str) -> None:
    print(f"[build-lab-image] {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("FIREBREAK_CACHE_DIR", "/var/cache/firebreak"))


def recipe() -> dict:
    """Everything that determines the image's content."""
    return {
        "recipe_version": RECIPE_VERSION,
        "suite": SUITE,
        "debian_packages": sorted(DEBIAN_PACKAGES),
        "python_packages": sorted(PYTHON_PACKAGES),
        "unit": (SYSTEMD_DIR / UNIT_NAME).read_text(),
        "node_exporter_unit": (SYSTEMD_DIR / NODE_EXPORTER_UNIT).read_text(),
        "timesync_unit": (SYSTEMD_DIR / TIMESYNC_UNIT).read_text(),
        "admin_wrapper": (SYSTEMD_DIR / ADMIN_WRAPPER).read_text(),
        "wrappers": {w: (SYSTEMD_DIR / w).read_text() for w in WRAPPERS},
        # The customization steps themselves: editing them rebuilds the image (not the rootfs).
        "steps": inspect.getsource(_customize) + inspect.getsource(_import),
    }


def recipe_hash() -> str:
    blob = json.dumps(recipe(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def base_hash() -> str:
    """Hash of what debootstrap makes (the slow part), cached apart from the rest."""
    r = recipe()
    base = {k: r[k] for k in ("recipe_version", "suite", "debian_packages")}
    return hashlib.sha256(json.dumps(base, sort_keys=True).encode()).hexdigest()[:12]


def image_ref(tag: str | None = None) -> str:
    return f"{IMAGE_NAME}:{tag or recipe_hash()}"


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=False, text=True, capture_output=True, **kw)


def image_exists(ref: str) -> bool:
    return _run(["podman", "image", "exists", ref]).returncode == 0


def check_podman() -> None:
    """Fail clearly when podman is missing or not configured as this machine needs."""
    if shutil.which("podman") is None:
        raise ImageError("podman is not installed (apt-get install -y podman runc)")
    res = _run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}"])
    if res.returncode != 0:
        raise ImageError(f"`podman info` failed: {res.stderr.strip()}")
    runtime, _, manager = res.stdout.strip().partition(" ")
    if runtime != "runc" or manager != "cgroupfs":
        raise ImageError(
            f"podman uses runtime={runtime!r} cgroup_manager={manager!r}; this kernel needs "
            f"runc + cgroupfs: write {CONTAINERS_CONF} as in docs (build-lab-image "
            "--configure-podman does it)"
        )


def configure_podman() -> bool:
    """Write containers.conf when it lacks the recipe's settings. Returns True if written."""
    current = CONTAINERS_CONF.read_text() if CONTAINERS_CONF.exists() else ""
    wanted = ('runtime = "runc"', 'cgroup_manager = "cgroupfs"', "default_ulimits")
    if all(w in current for w in wanted):
        return False
    if current.strip():
        backup = CONTAINERS_CONF.with_suffix(".conf.firebreak-backup")
        backup.write_text(current)
        log(f"kept the previous {CONTAINERS_CONF} as {backup}")
    CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
    CONTAINERS_CONF.write_text(CONTAINERS_CONF_TEXT)
    log(f"wrote {CONTAINERS_CONF}")
    return True


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / "build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _debootstrap(dest: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed (apt-get install -y debootstrap)")
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(DEBIAN_PACKAGES)}",
        SUITE,
        str(tmp),
    ]
    mirror = os.environ.get("FIREBREAK_DEBIAN_MIRROR")
    if mirror:
        argv.append(mirror)
    log("running: " + " ".join(argv))
    res = subprocess.run(argv, check=False, text=True, capture_output=True)
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).splitlines()[-30:])
        logf = tmp / "debootstrap" / "debootstrap.log"
        if logf.exists():
            tail += "\n--- debootstrap.log ---\n" + "\n".join(logf.read_text().splitlines()[-30:])
        raise ImageError(f"debootstrap failed ({res.returncode}):\n{tail}")
    # Trim what a container never needs.
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        d = tmp / sub
        if d.is_dir():
            for p in d.iterdir():
                if p.is_file() and p.name not in ("lock",):
                    p.unlink()
    tmp.rename(dest)


def _install_python_packages(rootfs: Path) -> None:
    target = rootfs / SITE_PACKAGES
    target.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-compile",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--platform",
        "manylinux2014_x86_64",
        "--upgrade",
        "--target",
        str(target),
        *PYTHON_PACKAGES,
    ]
    log("installing python packages into the rootfs: " + " ".join(PYTHON_PACKAGES))
    res = subprocess.run(argv, check=False, text=True, capture_output=True)
    if res.returncode != 0:
        raise ImageError(f"pip install into the rootfs failed:\n{res.stdout}\n{res.stderr}")


def _customize(rootfs: Path) -> None:
    """Idempotent steps applied on top of the debootstrapped tree."""
    _install_python_packages(rootfs)
    wants = rootfs / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit in UNITS:
        unit_dst = rootfs / "etc/systemd/system" / unit
        shutil.copyfile(SYSTEMD_DIR / unit, unit_dst)
        unit_dst.chmod(0o644)
        link = wants / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(f"/etc/systemd/system/{unit}")
    for name in WRAPPERS:
        wrapper = rootfs / "usr/local/bin" / name
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SYSTEMD_DIR / name, wrapper)
        wrapper.chmod(0o755)
    for d in (
        "etc/kimberlite",
        "var/lib/kimberlite",
        "var/lib/kimberlite-timesync",
        "opt/firebreak/python",
    ):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    # Units that only make noise or fail inside a container.
    masked = (
        "getty@tty1.service",
        "console-getty.service",
        "systemd-remount-fs.service",
        "systemd-firstboot.service",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "e2scrub_all.timer",
        "e2scrub_reap.service",
        "fstrim.timer",
    )
    sysdir = rootfs / "etc/systemd/system"
    for unit in masked:
        p = sysdir / unit
        if p.is_symlink() or p.exists():
            p.unlink()
        p.symlink_to("/dev/null")
    # Keep the journal in memory: quick, and gone with the container.
    jconf = rootfs / "etc/systemd/journald.conf.d"
    jconf.mkdir(parents=True, exist_ok=True)
    (jconf / "firebreak.conf").write_text(
        "[Journal]\nStorage=volatile\nRateLimitIntervalSec=0\nRuntimeMaxUse=64M\n"
    )
    (rootfs / "etc/firebreak-lab-recipe").write_text(recipe_hash() + "\n")


def _import(rootfs: Path, ref: str, h: str) -> None:
    log(f"importing {rootfs} as {ref}")
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-c", "."],
        stdout=subprocess.PIPE,
    )
    imp = subprocess.run(
        [
            "podman",
            "import",
            "--quiet",
            "--change",
            'CMD ["/sbin/init"]',
            "--change",
            f"LABEL {LABEL}=1",
            "--change",
            f"LABEL {LABEL}.recipe={h}",
            "--change",
            "STOPSIGNAL SIGRTMIN+3",
            "-",
            ref,
        ],
        stdin=tar.stdout,
        check=False,
        text=True,
        capture_output=True,
    )
    assert tar.stdout is not None
    tar.stdout.close()
    tar_rc = tar.wait()
    if tar_rc != 0 or imp.returncode != 0:
        raise ImageError(f"podman import failed (tar rc={tar_rc}): {imp.stderr.strip()}")


def _tag_latest(ref: str) -> None:
    latest = image_ref("latest")
    cur = _run(["podman", "image", "inspect", "--format", "{{.Id}}", ref]).stdout.strip()
    old = _run(["podman", "image", "inspect", "--format", "{{.Id}}", latest]).stdout.strip()
    if cur and cur != old:
        res = _run(["podman", "tag", ref, latest])
        if res.returncode != 0:
            raise ImageError(f"podman tag failed: {res.stderr.strip()}")


def ensure_image(force: bool = False, verbose: bool = True) -> str:
    """Return the image reference, building it only when its recipe changed."""
    check_podman()
    h = recipe_hash()
    ref = image_ref(h)
    if not force and image_exists(ref):
        _tag_latest(ref)
        if verbose:
            log(f"image up to date: {ref}")
        return ref
    with _build_lock():
        if not force and image_exists(ref):  # built by a concurrent caller
            _tag_latest(ref)
            if verbose:
                log(f"image up to date: {ref}")
            return ref
        t0 = time.monotonic()
        log(f"building {ref}")
        base = cache_dir() / f"rootfs-{base_hash()}"
        if force and base.exists():
            shutil.rmtree(base)
        if base.is_dir():
            log(f"reusing the cached debootstrap root filesystem {base}")
        else:
            _debootstrap(base)
            log(f"debootstrap done in {time.monotonic() - t0:.0f}s")
        work = cache_dir() / f"build-{h}"
        if work.exists():
            shutil.rmtree(work)
        try:
            _run(["cp", "-a", "--reflink=auto", str(base), str(work)])
            if not work.is_dir():
                raise ImageError(f"cannot copy {base} to {work}")
            _customize(work)
            _import(work, ref, h)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _tag_latest(ref)
        _prune_old(keep_rootfs=base, keep_ref=ref)
        log(f"built {ref} (and :latest) in {time.monotonic() - t0:.0f}s")
    return ref


def _prune_old(keep_rootfs: Path, keep_ref: str) -> None:
    """Drop root filesystems and image tags of older recipes (only the lab's own)."""
    for p in cache_dir().glob("rootfs-*"):
        if p != keep_rootfs and p.is_dir() and not p.name.endswith(".partial"):
            shutil.rmtree(p, ignore_errors=True)
    res = _run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_NAME])
    for ref in res.stdout.split():
        if ref not in (keep_ref, image_ref("latest")):
            # Fails harmlessly while a container still uses it.
            _run(["podman", "rmi", ref])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="build-lab-image", description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    ap.add_argument("--print-ref", action="store_true", help="print the image reference only")
    ap.add_argument("--print-hash", action="store_true", help="print the recipe hash and exit")
    ap.add_argument(
        "--configure-podman",
        action="store_true",
        help=f"write {CONTAINERS_CONF} (runc, cgroupfs, ulimits) when it lacks them",
    )
    args = ap.parse_args(argv)
    if args.print_hash:
        print(recipe_hash())
        return 0
    try:
        if args.configure_podman:
            configure_podman()
        ref = ensure_image(force=args.force)
    except ImageError as exc:
        log(f"ERROR: {exc}")
        return 1
    print(ref)
    return 0


if __name__ == "__main__":
    sys.exit(main())
