"""NaCl's secretbox (XSalsa20-Poly1305) opening, the one cipher rclone's crypt uses for file
contents, in pure Python for the little the product decrypts itself: the first block of an
object (does the key open it? what format is the dump?). Whole files are decrypted by rclone
in a container. Pure: no I/O here. Follows the NaCl specification (Bernstein, "Cryptography
in NaCl", 2009) as golang.org/x/crypto/nacl/secretbox implements it, which rclone calls
(backend/crypt/cipher.go: secretbox.Open).
"""

from __future__ import annotations

import hmac
import struct

_M = 0xFFFFFFFF
_SIGMA = struct.unpack("<4I", b"expand 32-byte k")
_QUARTERS = ((0, 4, 8, 12), (5, 9, 13, 1), (10, 14, 2, 6), (15, 3, 7, 11),   # columns
             (0, 1, 2, 3), (5, 6, 7, 4), (10, 11, 8, 9), (15, 12, 13, 14))  # rows
OVERHEAD = 16  # the Poly1305 tag in front of each box


def _rotl(v: int, c: int) -> int:
    return ((v << c) & _M) | (v >> (32 - c))


def _rounds(x: list[int]) -> list[int]:
    """Salsa20/20's 20 rounds on 16 words (the double round ten times)."""
    x = list(x)
    for _ in range(10):
        for a, b, c, d in _QUARTERS:
            x[b] ^= _rotl((x[a] + x[d]) & _M, 7)
            x[c] ^= _rotl((x[b] + x[a]) & _M, 9)
            x[d] ^= _rotl((x[c] + x[b]) & _M, 13)
            x[a] ^= _rotl((x[d] + x[c]) & _M, 18)
    return x


def _input(key: bytes, middle: tuple[int, ...]) -> list[int]:
    k = struct.unpack("<8I", key)
    s0, s1, s2, s3 = _SIGMA
    return [s0, *k[:4], s1, *middle, s2, *k[4:], s3]


def _hsalsa20(key: bytes, nonce16: bytes) -> bytes:
    z = _rounds(_input(key, struct.unpack("<4I", nonce16)))
    return struct.pack("<8I", z[0], z[5], z[10], z[15], z[6], z[7], z[8], z[9])


def _salsa20_stream(key: bytes, nonce8: bytes, length: int) -> bytes:
    n = struct.unpack("<2I", nonce8)
    out = bytearray()
    counter = 0
    while len(out) < length:
        x = _input(key, (*n, counter & _M, counter >> 32))
        out += struct.pack("<16I", *((a + b) & _M for a, b in zip(_rounds(x), x, strict=True)))
        counter += 1
    return bytes(out[:length])


_P = (1 << 130) - 5
_CLAMP = 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF


def _poly1305(key: bytes, message: bytes) -> bytes:
    r = int.from_bytes(key[:16], "little") & _CLAMP
    s = int.from_bytes(key[16:], "little")
    acc = 0
    for i in range(0, len(message), 16):
        acc = (acc + int.from_bytes(message[i:i + 16] + b"\x01", "little")) * r % _P
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def open_box(key: bytes, nonce: bytes, box: bytes, want: int | None = None) -> bytes | None:
    """The plaintext of one secretbox (tag + ciphertext) under a 32-byte key and a 24-byte
    nonce, or None when the tag does not authenticate it (a wrong key, a damaged box).
    `want`: decrypt only the first `want` bytes (authentication always covers the whole box)."""
    if len(box) < OVERHEAD:
        return None
    tag, ciphertext = box[:OVERHEAD], box[OVERHEAD:]
    subkey = _hsalsa20(key, nonce[:16])
    length = len(ciphertext) if want is None else min(want, len(ciphertext))
    stream = _salsa20_stream(subkey, nonce[16:], 32 + length)
    if not hmac.compare_digest(_poly1305(stream[:32], ciphertext), tag):
        return None
    return bytes(a ^ b for a, b in zip(ciphertext[:length], stream[32:], strict=True))
