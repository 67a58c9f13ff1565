"""The rclone containers read any file of their source (CAP_DAC_READ_SEARCH) but cannot open a
file of the host by its handle ("Shocker"): `docker inspect` of the real rclone container shows
the capability under the product's seccomp profile, and a program holding the same capability
opens a host file outside its bind mount with open_by_handle_at under Docker's default profile,
and gets EPERM under ours."""

from __future__ import annotations

import ctypes
import json
import struct
from pathlib import Path

import pytest

from supervisor.config import load as config_mod
from supervisor.containers import engine, seccomp
from supervisor.containers.jobs import READ_ANY_FILE, JobContainers, list_source
from tests.harness.images import ensure_systemd_image

MAX_HANDLE_SZ = 128

# Run in the container: open the handle given in argv[1] (hex) relative to the bind mount, read.
PROBE = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
handle = ctypes.create_string_buffer(bytes.fromhex(sys.argv[1]))
mount = os.open("/mnt/inside", os.O_RDONLY | os.O_DIRECTORY)
fd = libc.open_by_handle_at(mount, handle, os.O_RDONLY)
if fd < 0:
    print("errno", ctypes.get_errno())
else:
    print("read", os.read(fd, 100).decode())
"""


def _handle_of(path: Path) -> str:
    """name_to_handle_at(2) of a host file: its struct file_handle, in hex."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(struct.pack("Ii", MAX_HANDLE_SZ, 0) + b"\0" * MAX_HANDLE_SZ)
    mount_id = ctypes.c_int()
    if libc.name_to_handle_at(-100, str(path).encode(), buf, ctypes.byref(mount_id), 0) != 0:
        pytest.skip(f"no file handles on this filesystem (errno {ctypes.get_errno()})")
    size = struct.unpack_from("I", buf.raw)[0]
    return buf.raw[: 8 + size].hex()


def _probe(client, image: str, host_dir: Path, handle: str, security_opt: list[str]) -> str:
    spec = engine.Spec(
        image=image, command=["python3", "-c", PROBE, handle],
        mounts=[engine.file_mount(str(host_dir / "inside"), "/mnt/inside")],
        env={}, labels={engine.LABEL_JOB: "seccomp-probe"}, network_mode="none",
        cap_add=READ_ANY_FILE, user="0:0", security_opt=security_opt,
    )
    result = engine.run_oneshot(client, spec, 60)
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def test_open_by_handle_is_refused_under_the_profile(docker_client, tmp_path) -> None:
    image = ensure_systemd_image(docker_client)
    (tmp_path / "inside").mkdir()
    (tmp_path / "outside").mkdir()
    secret = tmp_path / "outside" / "secret"  # on the host, not in the container's mount
    secret.write_text("host secret")
    handle = _handle_of(secret)

    # Docker's default profile: the capability opens the host file behind the mount.
    assert _probe(docker_client, image, tmp_path, handle, []) == "read host secret"
    # The product's profile: EPERM, the file stays out of reach.
    assert _probe(docker_client, image, tmp_path, handle, [seccomp.security_opt()]) == "errno 1"


def test_real_rclone_container_has_the_profile(docker_client, s3server, bucket, write_config,
                                               tmp_path, monkeypatch) -> None:
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    (receipts / "a.pdf").write_bytes(b"a" * 10)
    cfg = config_mod.load(write_config(tmp_path, s3server, bucket, receipts_dir=receipts))
    run = JobContainers(cfg, cfg.job("receipts-upload"), "seccomp-test", docker_client)
    inspected = []
    create = engine._create

    def inspect_after_create(client, spec, **extra):
        container = create(client, spec, **extra)
        inspected.append(client.api.inspect_container(container.id)["HostConfig"])
        return container

    monkeypatch.setattr(engine, "_create", inspect_after_create)

    listing = list_source(run)  # rclone works under the profile

    assert [f.path for f in listing.files] == ["a.pdf"]
    (host,) = inspected
    assert host["CapDrop"] == ["ALL"]
    assert [c.removeprefix("CAP_") for c in host["CapAdd"]] == ["DAC_READ_SEARCH"]
    opts = host["SecurityOpt"]
    assert "no-new-privileges" in opts
    (profile,) = [json.loads(o.split("=", 1)[1]) for o in opts if o.startswith("seccomp=")]
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    refused = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ERRNO"
               for n in rule["names"]}
    allowed = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
               for n in rule["names"]}
    assert "open_by_handle_at" in refused and "open_by_handle_at" not in allowed
