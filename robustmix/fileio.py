"""Atomic file writes: a reader sees the old file or the new one, never half.

A temporary file is named ``.<name>.<random>.<pid>@<host>.tmp``, so a later run can tell one
whose writer was killed (same host, process gone) from one still being written, and remove it.
"""
from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_HOST = socket.gethostname().replace("@", "_").replace("/", "_")
_WRITER = re.compile(r"\.(\d+)@([^@/]*)\.tmp$")
# A temporary file lives only while one file is written and synced (seconds), so one an hour
# old is abandoned even where its writer cannot be checked (another host, or an older name).
STALE_TEMP_SECONDS = 3600


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(directory: str | Path) -> None:
    """Delete the temporary files of ``atomic_path`` left in ``directory`` by killed writers: on this
    host when their process is gone, otherwise when older than STALE_TEMP_SECONDS. A file another
    process is still writing (two evals may share a store) is left alone."""
    now = time.time()
    for tmp in Path(directory).glob(".*.tmp"):
        writer = _WRITER.search(tmp.name)
        try:
            if writer and writer.group(2) == _HOST:
                stale = not _alive(int(writer.group(1)))
            else:
                stale = now - tmp.stat().st_mtime > STALE_TEMP_SECONDS
            if stale:
                tmp.unlink()
        except OSError:  # gone already (its writer finished, or another run removed it), or not ours to remove
            continue


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path``; move it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{os.getpid()}@{_HOST}.tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600; results and reports are meant to be shared.
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
