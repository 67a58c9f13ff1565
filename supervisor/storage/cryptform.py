"""Does what a prefix holds match the form its destination writes (rclone crypt with this key,
or plain)? A run that would mix them is refused before anything changes; restores and doctor
prove the key on one object's first block (storage.crypt.open_head) before they read more.
The form is read from what is there: `.bin` keys, rclone crypt's header, the key opening it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from supervisor.core.text import printable
from supervisor.storage import crypt, markers, s3
from supervisor.storage.destination import Destination

NEW_PREFIX = "use a new prefix or bucket (docs/encryption.md#key-rotation)"


class WrongKey(s3.S3Error):
    """The destination's key does not open an object: `cannot decrypt s3://...: wrong
    encryption key for destination NAME?`."""

    def __init__(self, dest: Destination, key: str) -> None:
        super().__init__(f"cannot decrypt {printable(dest.key_url(key))}: wrong encryption key "
                         f"for destination {dest.name}?")


class NotEncrypted(s3.S3Error):
    """An object without rclone crypt's header where the destination encrypts."""


def plain_head(dest: Destination, obj: s3.S3Object, want: int = 0) -> bytes:
    """The first `want` plaintext bytes of an encrypted object (or version), from one ranged
    GET of its first block, which the key must open. Raises WrongKey, NotEncrypted (S3Errors),
    S3Error."""
    assert dest.crypt_key is not None
    head = s3.read_head(dest, obj.key, crypt.HEADER_SIZE + crypt.BLOCK_SIZE, obj.version_id)
    try:
        return crypt.open_head(dest.crypt_key, head, want)
    except crypt.WrongKey:
        raise WrongKey(dest, obj.key) from None
    except crypt.NotEncrypted:
        raise NotEncrypted(f"cannot decrypt {printable(dest.key_url(obj.key))}: it is not "
                         f"encrypted (no rclone crypt header)") from None


def newest(objects: Iterable[s3.S3Object]) -> s3.S3Object | None:
    """The newest object with content (an empty file's crypt object is a bare header)."""
    held = [o for o in objects if o.size > crypt.HEADER_SIZE]
    return max(held, key=lambda o: (o.last_modified, o.key)) if held else None


def problem(dest: Destination, prefix: str, raw: Mapping[str, s3.S3Object]) -> str:
    """Why writing `dest`'s form under prefix/ would mix forms (one line), or "". `raw`: the
    prefix as listed (s3.list_objects raw). Reads at most one object's first block."""
    objects = {rel: o for rel, o in raw.items() if rel not in markers.MARKER_NAMES}
    where = dest.url(prefix)
    if dest.encrypted:
        plain = sorted(rel for rel in objects if crypt.plain(rel, 0) is None)
        sample = newest(objects.values())
        if not plain and sample is not None:
            try:
                plain_head(dest, sample)
            except WrongKey:
                return (f"the encryption key of destination {dest.name} does not decrypt "
                        f"{printable(dest.key_url(sample.key))} (a changed key?): refused, "
                        f"nothing changed; {NEW_PREFIX} for the new key")
            except NotEncrypted:
                plain = [sample.key[len(prefix) + 1:]]
        if plain:
            return (f"{where} holds {len(plain)} object(s) written without encryption (e.g. "
                    f"{printable(plain[0])}) and destination {dest.name} encrypts: refused, "
                    f"nothing changed; {NEW_PREFIX} for the encrypted copy")
        return ""
    sample = newest(o for rel, o in objects.items() if rel.endswith(crypt.SUFFIX))
    if sample is not None and s3.read_head(dest, sample.key, len(crypt.MAGIC)) == crypt.MAGIC:
        return (f"{where} holds objects encrypted with rclone crypt (e.g. "
                f"{printable(sample.key)}) and destination {dest.name} has no "
                f"encryption_key_file: refused, nothing changed; set "
                f"{dest.setting('encryption_key_file')} again, or {NEW_PREFIX} for plain copies")
    return ""
