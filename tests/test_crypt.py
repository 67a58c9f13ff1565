"""storage.crypt against rclone itself (the venv's rclone 1.75.2, run locally on files, no
Docker): the sizes, the obscured passwords, the first block opened; and the key file's rules."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import pytest
from docker.types import Mount

from supervisor.config import load as config
from supervisor.containers import jobs, rclone
from supervisor.storage import crypt

RCLONE = Path("/work/main/.venv/bin/rclone")
SIZES = (0, 1, 100, crypt.BLOCK_DATA - 1, crypt.BLOCK_DATA, crypt.BLOCK_DATA + 1,
         3 * crypt.BLOCK_DATA + 17)


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[bytes, bytes]]:
    """size -> (plaintext, what rclone's crypt wrote for it), password "pw one"/"salt two"."""
    root = tmp_path_factory.mktemp("crypt")
    (root / "plain").mkdir()
    plain = {n: bytes((i * 7 + n) % 251 for i in range(n)) for n in SIZES}
    for n, body in plain.items():
        (root / "plain" / str(n)).write_bytes(body)
    conf = root / "rclone.conf"
    conf.write_text(crypt.rclone_config("unused", crypt.CryptKey("pw one", "salt two"))
                    .replace(crypt.LOCAL_ROOT, str(root / "enc")))
    subprocess.run([str(RCLONE), "--config", str(conf), "copy", str(root / "plain"),
                    f"{crypt.LOCAL_REMOTE}:"], check=True, capture_output=True, timeout=60)
    return {n: (body, (root / "enc" / f"{n}.bin").read_bytes()) for n, body in plain.items()}


def test_sizes_are_rclones(sealed) -> None:
    for n, (_, body) in sealed.items():
        assert crypt.encrypted_size(n) == len(body)
        assert crypt.decrypted_size(len(body)) == n
    assert crypt.decrypted_size(crypt.HEADER_SIZE - 1) is None
    assert crypt.decrypted_size(crypt.HEADER_SIZE + 16) is None  # a block of overhead only


def test_rclone_reveals_what_obscure_makes() -> None:
    """The product's obscured passwords are what rclone reads back: the config file above was
    made with them, and `rclone reveal` shows the text (multi-byte, 256 bytes at most)."""
    for text in ("pw one", "ünïcode ✓ " * 5, "x" * crypt.MAX_PASSWORD):
        shown = subprocess.run([str(RCLONE), "reveal", crypt.obscure(text)], check=True,
                               capture_output=True, text=True, timeout=30).stdout
        assert shown.rstrip("\n") == text


def test_the_first_block_opens_with_the_key_only(sealed) -> None:
    key, other = crypt.CryptKey("pw one", "salt two"), crypt.CryptKey("pw one", "salt 2")
    for n, (body, box) in sealed.items():
        head = box[:crypt.HEADER_SIZE + crypt.BLOCK_SIZE]
        assert crypt.open_head(key, head, 1000) == body[:1000]
        if n:
            with pytest.raises(crypt.WrongKey):
                crypt.open_head(other, head, 0)
            damaged = bytearray(head)
            damaged[-1] ^= 1  # the block's last byte: authentication covers the whole block
            with pytest.raises(crypt.WrongKey):
                crypt.open_head(key, bytes(damaged), 0)
    body, box = sealed[crypt.BLOCK_DATA + 1]  # one whole block decrypted (pure Python: slow)
    assert crypt.open_head(key, box[:crypt.HEADER_SIZE + crypt.BLOCK_SIZE]) == \
        body[:crypt.BLOCK_DATA]
    with pytest.raises(crypt.NotEncrypted):
        crypt.open_head(key, b"%PDF-1.7 a plain file")


def test_names_map_in_one_place() -> None:
    assert crypt.plain("last/a.dump.bin", crypt.encrypted_size(5)) == ("last/a.dump", 5)
    assert crypt.plain("last/a.dump", 37) is None  # crypt shows no object without `.bin`
    assert crypt.plain("last/.bin", 37) is None
    assert crypt.plain("a.bin", 40) == ("a", -1)  # no encrypted file has 40 bytes


def test_key_file_errors_name_the_file_never_the_text(tmp_path: Path) -> None:
    path = tmp_path / "crypt.toml"
    cases = {
        'password = "secret-1"\n': "must set password2 to a non-empty string",
        'password = "secret-1"\npassword2 = ""\n': "must set password2",
        'password = "secret-1"\npassword2 = "s"\nsalt = "secret-2"\n': "unknown key(s) salt",
        'password = "secret-1\n': "is not a TOML file",
        f'password = "{"y" * 300}"\npassword2 = "s"\n': "longer than 256 bytes",
    }
    for text, expected in cases.items():
        path.write_text(text)
        with pytest.raises(ValueError) as exc:
            crypt.read_key(path, "destinations.primary.encryption_key_file")
        message = str(exc.value)
        assert message.startswith(f"destinations.primary.encryption_key_file {path}")
        assert expected in message and "secret" not in message and "yyy" not in message
    path.write_text('password = "a"\npassword2 = "b"\n')
    assert "'a'" not in repr(crypt.read_key(path, "s3.encryption_key_file"))
    with pytest.raises(ValueError, match="does not exist"):
        crypt.read_key(tmp_path / "missing.toml", "s3.encryption_key_file")


def test_the_passwords_reach_rclone_only_in_a_read_only_private_file(tmp_path: Path) -> None:
    """An encrypted destination's rclone container: the passwords (plain or obscured) are not in
    its command or environment (`docker inspect` shows both); its config file is 0600 in a 0700
    directory, mounted read-only, and the crypt remote is what it writes to."""
    key = tmp_path / "crypt.toml"
    key.write_text('password = "p-4711-secret"\npassword2 = "s-0815-secret"\n')
    key.chmod(0o600)
    path = tmp_path / "config.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\n[s3]\nbucket = "b-1"\n'
                    f'encryption_key_file = "{key}"\n[jobs.receipts-upload]\n'
                    f'schedule = "0 * * * *"\nsource = "{tmp_path}"\nprefix = "receipts"\n')
    path.chmod(0o600)
    cfg = config.load(path)
    dest = cfg.destination()
    assert "secret" not in repr(cfg)
    command = rclone.sync_command(dest, "receipts", 60)
    spec = jobs.rclone_spec(cfg, dest, command, Mount("/source", str(tmp_path), type="bind"), {})
    shown = " ".join([*spec.command, *spec.env.values(), *map(str, spec.env)])
    conf = tmp_path / "state" / "crypt" / "s3.conf"
    text = conf.read_text()
    for secret in ("p-4711-secret", "s-0815-secret", *re.findall(r"= (\S{20,})", text)):
        assert secret not in shown
    assert "--config" in spec.command and rclone.CRYPT_CONFIG_MOUNT in spec.command
    assert f"{crypt.REMOTE}:receipts/" in spec.command and "--checksum" not in spec.command
    mount = next(m for m in spec.mounts if m["Target"] == rclone.CRYPT_CONFIG_MOUNT)
    assert mount["Source"] == str(conf) and mount["ReadOnly"] is True
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert stat.S_IMODE(conf.parent.stat().st_mode) == 0o700
    assert "p-4711-secret" not in text  # obscured, as rclone's config file holds it
