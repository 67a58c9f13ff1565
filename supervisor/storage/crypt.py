"""Client-side encryption: rclone's crypt remote over a destination's S3 remote, names readable.
Pure: no I/O here but reading the key file.

The format is rclone's (backend/crypt/cipher.go, rclone 1.75): each object is a 32-byte header
(the magic `RCLONE\\0\\0` and a 24-byte nonce) then blocks of up to 64 KiB of data, each sealed
with NaCl secretbox (16 bytes of overhead) under the nonce, incremented per block. The key is
scrypt(password, password2 or a fixed salt, N=16384, r=8, p=1), its first 32 bytes the data
key (Cipher.Key). With `filename_encryption = off` a key is its name plus `.bin`, so every
listing maps an object's key and size to the file's name and size here, in one place
(`plain`); status and the guard then compare names and sizes as for a plain destination.
"""

from __future__ import annotations

import base64
import hashlib
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from supervisor.storage import secretbox

SUFFIX = ".bin"  # rclone's default for filename_encryption = off
MAGIC = b"RCLONE\x00\x00"
NONCE_SIZE = 24
HEADER_SIZE = len(MAGIC) + NONCE_SIZE
BLOCK_DATA = 64 * 1024
BLOCK_SIZE = secretbox.OVERHEAD + BLOCK_DATA
# rclone's salt when password2 is empty (cipher.go defaultSalt); the product requires one.
_DEFAULT_SALT = bytes.fromhex("a80df43a8fbd0308a7cab83e581f86b1")
REMOTE = "ardua-crypt"  # the crypt remote's name in the config file the containers get
LOCAL_REMOTE = "ardua-local"  # the same key over a local folder: decrypting a download
LOCAL_ROOT = "/run/ardua-encrypted"  # that folder, in the container
MAX_PASSWORD = 256  # bytes: the obscuring keystream below covers this much


class WrongKey(ValueError):
    """The key does not open an object's first block."""


class NotEncrypted(ValueError):
    """An object without rclone crypt's header."""


@dataclass(frozen=True)
class CryptKey:
    """The two passwords of a key file. Never shown: repr and errors leave them out."""

    password: str = field(repr=False)
    password2: str = field(repr=False)

    @property
    def data_key(self) -> bytes:
        return _data_key(self.password, self.password2)


@lru_cache(maxsize=8)
def _data_key(password: str, salt: str) -> bytes:
    """scrypt as rclone's Cipher.Key: 80 bytes (data key, name key, name tweak), 16 MiB."""
    return hashlib.scrypt(password.encode(), salt=salt.encode() or _DEFAULT_SALT, n=16384, r=8,
                          p=1, maxmem=64 << 20, dklen=80)[:32]


def read_key(path: Path, setting: str) -> CryptKey:
    """The key file's two passwords; ValueError, one line naming the file (never its text)."""
    where = f"{setting} {path}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where} cannot be read: {getattr(exc, 'strerror', None) or 'not UTF-8'}"
                         ) from None
    except tomllib.TOMLDecodeError:
        raise ValueError(f"{where} is not a TOML file of password = \"...\" and "
                         f"password2 = \"...\"") from None
    values = []
    for name in ("password", "password2"):
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where} must set {name} to a non-empty string")
        if len(value.encode()) > MAX_PASSWORD:
            raise ValueError(f"{where}: {name} is longer than {MAX_PASSWORD} bytes")
        values.append(value)
    if extra := sorted(set(data) - {"password", "password2"}):
        raise ValueError(f"{where}: unknown key(s) {', '.join(extra)} (only password, password2)")
    return CryptKey(*values)


# rclone's obscuring (fs/config/obscure/obscure.go): AES-256-CTR under a key in its source,
# with a random IV, base64url without padding; crypt reveals both passwords from the config
# file. It is no secrecy (the key is public); the file is. Here with a fixed all-zero IV, whose
# keystream (AES-256-CTR of that key, counter 0..15) is this constant: no AES code needed.
# tests/test_crypt.py checks that rclone reveals what this makes.
_OBSCURE_STREAM = bytes.fromhex(
    "44dba96255ffa8c12131142bf385990dcb94f3cecb6d79df52d8bb4e268ecbf747c0ac0468ef6200c464cf834c"
    "f4eb397823d14c474f4273f6855c91dbe15fd14f3e5741d7dae543aae8b6efc449238b6b7a583c2aa978abbcf3"
    "3ea97cb83be5338ab6ab6d6863681ce03c5f17c1ed0470c3699ffb91f8304f09a03ff95d1c6f5d4a9ad5bbf055"
    "6afc1a232f068efdbd3ec6216763b8d121ee5eb2bdd625e6e2e2651d475294e17c8e1fd4d1f08c8986aec95d8f"
    "c0da26b120217f1914e392899b28bcf274f130e4279b43b5822fff5ce8cd5ba48510d37db000d986620a366d33"
    "e9e367d999a9fdf82d79de37847a82d000a10c8e6bf8e4050d6b3fa4d79e52")


def obscure(text: str) -> str:
    """rclone obscure's output for `text` (at most MAX_PASSWORD bytes)."""
    raw = text.encode()
    sealed = bytes(16) + bytes(a ^ b for a, b in zip(raw, _OBSCURE_STREAM, strict=False))
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def rclone_config(bucket: str, key: CryptKey) -> str:
    """The rclone config file of an encrypted destination: a crypt remote over the bucket on
    the `:s3:` backend (configured by environment, as a plain destination's), and one over
    LOCAL_ROOT."""
    return "\n".join(line for name, remote in ((REMOTE, f":s3:{bucket}"),
                                               (LOCAL_REMOTE, LOCAL_ROOT)) for line in (
        f"[{name}]",
        "type = crypt",
        f"remote = {remote}",
        "filename_encryption = off",
        "directory_name_encryption = false",
        f"password = {obscure(key.password)}",
        f"password2 = {obscure(key.password2)}",
        "",
    ))


def encrypted_size(size: int) -> int:
    """rclone's Cipher.EncryptedSize: the header, then 16 bytes per started 64 KiB block."""
    blocks, residue = divmod(size, BLOCK_DATA)
    return HEADER_SIZE + blocks * BLOCK_SIZE + (secretbox.OVERHEAD + residue if residue else 0)


def decrypted_size(size: int) -> int | None:
    """rclone's Cipher.DecryptedSize; None for a size no encrypted file has."""
    size -= HEADER_SIZE
    if size < 0:
        return None
    blocks, residue = divmod(size, BLOCK_SIZE)
    if residue and residue <= secretbox.OVERHEAD:
        return None
    return blocks * BLOCK_DATA + (residue - secretbox.OVERHEAD if residue else 0)


def object_name(name: str) -> str:
    return name + SUFFIX


def plain(name: str, size: int) -> tuple[str, int] | None:
    """A listed object as rclone's crypt shows it: its name without `.bin` and its plaintext
    size (-1 for a size no encrypted file has: it matches no local file); None for an object
    crypt does not show (no `.bin`)."""
    if not name.endswith(SUFFIX) or name == SUFFIX or name.endswith("/" + SUFFIX):
        return None
    plain_size = decrypted_size(size)
    return name[:-len(SUFFIX)], -1 if plain_size is None else plain_size


def open_head(key: CryptKey, head: bytes, want: int | None = None) -> bytes:
    """The plaintext at the start of an object from its first bytes (the header and the whole
    first block: up to HEADER_SIZE + BLOCK_SIZE). Raises NotEncrypted, WrongKey."""
    if head[:len(MAGIC)] != MAGIC or len(head) < HEADER_SIZE:
        raise NotEncrypted("no rclone crypt header")
    if len(head) == HEADER_SIZE:
        return b""  # an empty file: no block to authenticate
    opened = secretbox.open_box(key.data_key, head[len(MAGIC):HEADER_SIZE],
                                head[HEADER_SIZE:HEADER_SIZE + BLOCK_SIZE], want)
    if opened is None:
        raise WrongKey("the key does not open the first block")
    return opened
