"""File names and atomic writes: a reader sees the old file (or directory) or the new one, never half.

A temporary file is named ``.<name>.<random>.<pid>@<host>.tmp``, so a later run can tell one
whose writer was killed (same host, process gone) from one still being written, and remove it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def model_slug(name: str) -> str:
    """Filesystem-safe, deterministic id of a model name (used for banks/<slug>.npy).

    Names that are already safe (letters, digits, ``._-``, at most 80 chars,
    not starting with a dot) are kept unchanged so file names stay readable.
    Any other name is reduced to its safe characters plus 8 hex digits of its
    SHA-1: two names that sanitise alike (``a b`` / ``a/b``) still get
    different files, and the same name always maps to the same file.
    """
    name = str(name)
    if _SAFE.match(name):
        return name
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:60] or "model"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{base}-{digest}"


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


@contextmanager
def temp_dir_next_to(target: str | Path):
    """A fresh directory beside ``target`` (same filesystem, so a rename is atomic), removed on exit."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700; reports and exports are meant to be shared
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(new: Path, target: Path) -> None:
    """Put directory ``new`` at ``target``; on failure the previous ``target`` stays in place."""
    old = None
    try:
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rename(target, old / "previous")
        os.rename(new, target)
    except OSError:
        if old is not None and (old / "previous").exists():  # put the previous directory back
            os.rename(old / "previous", target)
        raise
    finally:
        # Holds the replaced directory after success, nothing after a put-back; never the only copy.
        if old is not None and target.exists():
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(target: str | Path):
    """Yield an empty directory to fill; on success it replaces ``target`` whole, on error nothing changes."""
    target = Path(target)
    with temp_dir_next_to(target) as tmp:
        yield tmp
        replace_dir(tmp, target)
