"""Directories opened once, without following symlinks, and held by descriptor: a path given by
the operator is resolved once (symlinks up to its parent, as the operator meant them), then each
component is opened with O_NOFOLLOW from the one above, missing ones made with mkdirat there, so a
component swapped for a symlink later is refused (ELOOP), never followed."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathRefused(Exception):
    """One line: why the path cannot be used."""


@dataclass(frozen=True)
class HeldDir:
    """An open directory: its path as opened, its descriptor, and the stat of each directory
    from / down to it (chain[-1] is the directory itself)."""

    path: Path
    fd: int
    parent_fd: int
    chain: tuple[os.stat_result, ...]

    @property
    def st(self) -> os.stat_result:
        return self.chain[-1]

    def unchanged(self) -> bool:
        """Is the name in its parent still this directory (same device and inode, not a
        symlink)? Checked from the held parent, not by path."""
        try:
            now = os.stat(self.path.name, dir_fd=self.parent_fd, follow_symlinks=False)
        except OSError:
            return False
        return (stat.S_ISDIR(now.st_mode)
                and (now.st_dev, now.st_ino) == (self.st.st_dev, self.st.st_ino))

    def close(self) -> None:
        for fd in {self.fd, self.parent_fd}:
            with contextlib.suppress(OSError):
                os.close(fd)


def open_dir(path: Path, *, create: bool = False, mode: int = 0o755) -> HeldDir:
    """`path` opened as above. Raises PathRefused: a component that is a symlink or not a
    directory, or missing (when not `create`)."""
    absolute = Path(os.path.abspath(path))
    if absolute == absolute.parent:
        raise PathRefused(f"{absolute} is the root directory")
    # Resolved once: the parent's symlinks, as the operator wrote them; never the last name.
    target = Path(os.path.realpath(absolute.parent)) / absolute.name
    fd = os.open("/", DIR_FLAGS)
    chain = [os.fstat(fd)]
    parent_fd = -1
    try:
        for name in target.parts[1:]:
            child = _open_child(fd, name, target, create, mode)
            if parent_fd != -1:
                os.close(parent_fd)
            parent_fd, fd = fd, child
            chain.append(os.fstat(fd))
    except BaseException:
        for held in {fd, parent_fd} - {-1}:
            os.close(held)
        raise
    return HeldDir(target, fd, parent_fd, tuple(chain))


def _open_child(parent_fd: int, name: str, target: Path, create: bool, mode: int) -> int:
    for attempt in (1, 2):
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create or attempt == 2:
                raise PathRefused(f"{target}: {name} does not exist") from None
            with contextlib.suppress(FileExistsError):  # made meanwhile: opened next round
                os.mkdir(name, mode, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP or _is_symlink(parent_fd, name):
                raise PathRefused(f"{target}: {name} is a symlink; give the real path") from None
            if exc.errno == errno.ENOTDIR:
                raise PathRefused(f"{target}: {name} exists and is not a directory") from None
            raise PathRefused(f"{target}: {name}: {exc.strerror}") from None
    raise AssertionError("unreachable")


def _is_symlink(parent_fd: int, name: str) -> bool:
    """(O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR, not ELOOP.)"""
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def others_can_replace(parent: os.stat_result, child: os.stat_result,
                       trusted: frozenset[int]) -> bool:
    """Can a user outside `trusted` rename `child` out of `parent` and put a symlink in its
    place? Yes when `parent` is theirs, or writable by them (its group's, gid 0 aside, or
    everyone's), unless it is sticky and `child` is a trusted user's."""
    if parent.st_uid not in trusted:
        return True
    mode = parent.st_mode
    if not (mode & stat.S_IWOTH or (mode & stat.S_IWGRP and parent.st_gid != 0)):
        return False
    return not (mode & stat.S_ISVTX and child.st_uid in trusted)


def plain_relative(name: str) -> bool:
    """Is `name` (an S3 key below a prefix) a plain relative path: not empty, not absolute, no
    empty, `.` or `..` segment, no NUL? Only such a name can be joined onto a local folder and
    stay in it."""
    if not name or "\0" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def open_regular_below(root_fd: int, rel: str) -> int | None:
    """`rel` (a plain_relative name) opened for reading below the directory root_fd, no
    symlink followed at any depth, no FIFO waited on: its descriptor, or None when there is
    no regular file by that name there."""
    parts = rel.split("/")
    opened: list[int] = []
    try:
        fd = root_fd
        for name in parts[:-1]:
            fd = os.open(name, DIR_FLAGS, dir_fd=fd)
            opened.append(fd)
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise
    finally:
        for held in opened:
            os.close(held)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd
