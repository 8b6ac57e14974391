"""Atomic file writes: a kill never leaves a half-written summary, report or cache."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Write via ``write(file)`` into a temp file beside ``path``, then rename over it.

    ``os.replace`` is atomic on POSIX within one filesystem, so readers see either the
    old file or the whole new one; a failed write (a full disk) leaves the old file and no
    temp file, and its OSError names ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if not isinstance(err, OSError) and isinstance(err.__context__, OSError):
            err = err.__context__  # torch.save's zip writer turns a full disk into a RuntimeError on close
        if isinstance(err, OSError) and err.filename is None:  # a write on a full disk names no file
            raise OSError(err.errno, err.strerror, str(path)) from err
        if isinstance(err, OSError):
            raise err from None
        raise
    return path


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Atomically write ``data`` as indented JSON."""
    return atomic_write(path, lambda f: json.dump(data, f, indent=2, sort_keys=True, default=str))
