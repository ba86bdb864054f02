"""The renderer's folder for documents being read, and the removal of dead gateways' ones.

A document is written once to a file in the folder (`ocrflux-documents-<pid>-<random>` in the
temporary directory) and the render workers open it by path. A gateway stopped in order
removes its folder; one killed by SIGKILL or the OOM killer cannot, so every gateway, as it
starts, removes the folders whose owner is gone. The owner holds an exclusive `flock` on the
folder itself for its whole life: the kernel lets go of it when the process ends, however it
ends, and a lock is not fooled by a reused pid nor by a pid seen from another namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
import tempfile
import time

logger = logging.getLogger("ocrflux.documents")

PREFIX = "ocrflux-documents-"
# A folder is set up (made, locked) under this name, then renamed: one with the final name is
# always locked while its owner lives (the lock is on the folder, not on its name).
_BUILDING = f".{PREFIX}new-"
_FINAL = re.compile(rf"{re.escape(PREFIX)}\d+-")
# A folder being set up is left alone this long (its lock is taken right after it is made).
_BUILD_SECONDS = 60


class ScratchFolder:
    """A folder this process owns (and locks) until `remove()`."""

    def __init__(self, tmp_dir: str | None = None) -> None:
        base = tmp_dir or tempfile.gettempdir()
        removed = remove_dead_folders(base)
        if removed:
            logger.info("removed %d document folders left by gateways that died", removed)
        building = tempfile.mkdtemp(prefix=_BUILDING, dir=base)
        self._lock: int | None = os.open(building, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = os.path.join(base, f"{PREFIX}{os.getpid()}-{secrets.token_hex(6)}")
        os.rename(building, self.path)

    def remove(self) -> None:
        """Remove the folder and everything in it, then let go of the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def remove_dead_folders(base: str) -> int:
    """Remove the document folders in `base` whose owner no longer runs; how many."""
    removed = 0
    with contextlib.suppress(OSError), os.scandir(base) as entries:
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if _FINAL.match(entry.name) or (
                entry.name.startswith(_BUILDING)
                and time.time() - entry.stat(follow_symlinks=False).st_mtime > _BUILD_SECONDS
            ):
                removed += _remove_if_dead(entry.path)
    return removed


def _remove_if_dead(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return 0  # gone already, or not ours to open
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0  # its gateway runs
        shutil.rmtree(path, ignore_errors=True)
        return 1
    finally:
        os.close(fd)
