"""Which object names from S3 a restore refuses to turn into a local path.

Anyone who can write to the bucket can plant keys, and no upload of ours writes one of these:
a `.` or `..` segment (out of the folder, or onto the folder itself), a leading `/` or an empty
segment (an absolute path, or a name rclone rewrites), a NUL (no file name holds one), a
backslash (a separator elsewhere). Such a key is refused by name, never joined onto a folder.
Pure: no I/O here.
"""

from __future__ import annotations

from supervisor.core.text import printable


def refusal(name: str) -> str:
    """Why `name` (an S3 key relative to the restored prefix or dump directory) cannot be a path
    below the target; "" when it can."""
    if "\0" in name:
        return "holds a NUL"
    if "\\" in name:
        return "holds a backslash"
    if name.startswith("/"):
        return "starts with '/'"
    parts = name.split("/")
    for bad, why in (("..", "has a '..' segment"), (".", "has a '.' segment"),
                     ("", "has an empty segment")):
        if bad in parts:
            return why
    return ""


def refused_line(key: str, why: str) -> str:
    """One line naming a refused key (escaped: it may hold any character)."""
    return f"refused S3 key '{printable(key)}': it {why}, so it names no path inside the target"
