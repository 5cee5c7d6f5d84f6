"""Atomic file writes and input-path checks: the one way p2e writes a file anyone will read.

A write goes to a hidden temp file in the destination's directory, is fsynced, then renamed over
the final name, so a kill at any moment leaves either the old file or the new one, never a part.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import P2EError, P2ERuntimeError

TEMP_PREFIX = ".p2e-tmp-"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_path(path: Path | str) -> Path:
    """Validate a user-requested output file: its folder must exist and it must not be a folder."""
    path = Path(path)
    if path.is_dir():
        raise P2EError(f"output path {path} is a directory", hint="give a file name, e.g. -o out.safetensors")
    if not path.parent.is_dir():
        raise P2EError(f"output folder {path.parent} does not exist", hint=f"create it first: mkdir -p {path.parent}")
    return path


def os_error(error: BaseException) -> OSError | None:
    """The operating-system error behind an exception: an OSError itself, or the one a library
    written in Rust (safetensors) reports only as text, '... (os error 28)'."""
    if isinstance(error, OSError):
        return error
    match = re.search(r"\(os error (\d+)\)", str(error))
    return OSError(int(match[1]), os.strerror(int(match[1]))) if match else None


def write_failure(what: str, error: OSError) -> P2ERuntimeError:
    """The one-line error for a write that the system refused (disk full, read-only, permissions)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return P2ERuntimeError(f"no space left on device while writing {what}", hint="free some disk space and retry")
    return P2ERuntimeError(f"cannot write {what}: {error.strerror or error}",
                           hint="check that the folder is writable and the disk is not full")


@contextmanager
def atomic_write(path: Path | str) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success fsync it and rename it to `path`.

    On any error (or Ctrl-C) the temp file is removed and `path` is untouched; a write the system
    refuses is a P2ERuntimeError. The temp name keeps the suffix so libraries that dispatch on it
    (imageio, safetensors) behave.
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
    except OSError as e:
        raise write_failure(str(path), e) from e
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 (and writers may replace the file)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if (cause := os_error(e)) is not None:
            raise write_failure(str(path), cause) from e
        raise


def readable_file(path: Path | str, what: str = "file") -> Path:
    """Check an input path names a readable regular file (not a folder, device or missing path)."""
    path = Path(path)
    if not path.exists():
        raise P2EError(f"{what} {path} does not exist")
    if path.is_dir():
        raise P2EError(f"{what} {path} is a directory, expected a file")
    if not path.is_file():
        raise P2EError(f"{what} {path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise P2EError(f"{what} {path} is not readable", hint="check its permissions")
    return path
