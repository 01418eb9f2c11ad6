"""Reading input files (workflow files, ``--data @FILE``, heads files) safely.

Only a regular file is read, and its size cap is enforced while reading (at most
``limit + 1`` bytes are read), so ``/dev/zero``, a FIFO with no writer, a directory
or a file that grows while it is read gives one clear error instead of a hang or
exhausted memory.
"""

from __future__ import annotations

import os
import stat

from .errors import InvalidInputError

__all__ = ["read_regular_file", "special_kind"]

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def special_kind(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it exists but is not a regular file ("a FIFO (named pipe)",
    "a character device" ...), else None (a regular file, or nothing there)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((k for test, k in _KINDS if test(mode)), "not a regular file")


def read_regular_file(path: str | os.PathLike[str], *, limit: int, what: str = "the file") -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    Raises InvalidInputError when ``path`` is not a regular file or holds more than
    ``limit`` bytes; OSError (FileNotFoundError, PermissionError, ...) when it can't
    be opened. Opening never blocks: a FIFO is opened non-blocking and then refused.
    """
    name = os.fsdecode(os.fspath(path))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((k for test, k in _KINDS if test(mode)), "not a regular file")
            raise InvalidInputError(f"{what} {name!r} is {kind}; only a regular file is read.")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise InvalidInputError(f"{what} {name!r} is larger than {limit} bytes; at most "
                                    f"{limit} bytes are read.")
        return b"".join(chunks)
    finally:
        os.close(fd)
