"""The embedded database's files are for the service's user alone: they hold every account's webhook
secret in clear (signing needs it) and the API keys' hashes.

`private_sqlite_files` runs before SQLite first opens the database (`migrate.upgrade`, which the server
and the administration commands run first): a data directory it creates is 0700, and the database file
is created 0600, empty (SQLite takes an empty file for an empty database). SQLite's unix VFS gives the
-wal, -shm and -journal files the database file's mode when it creates them, whatever the umask, so they
are 0600 too. A database found readable by others (made by an older version, or copied) is tightened to
its owner's bits, with a warning; so are those of its side files that exist.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("switchboard.store")

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
SIDE_FILES = ("-wal", "-shm", "-journal")
"""What SQLite keeps beside the database file (WAL mode uses the first two; migrations may use the last)."""


def private_sqlite_files(path: str | os.PathLike[str]) -> None:
    """Make sure the database at `path` and its side files are readable and writable by their owner only,
    creating its directory (0700) and the file itself (0600) when they do not exist yet."""
    database = Path(path)
    if not database.parent.exists():
        # Only the last directory gets the mode (parents made on the way keep the umask's), and only when it
        # is made here: an existing directory, perhaps shared, is the operator's to set.
        database.parent.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        return
    except FileExistsError:
        pass
    for name in (database, *(Path(f"{database}{suffix}") for suffix in SIDE_FILES)):
        _tighten(name)


def _tighten(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if not mode & 0o077:
        return
    try:
        path.chmod(mode & 0o700)
    except OSError as e:
        log.warning("%s is readable by others (mode %03o) and could not be changed: %s", path, mode, e.strerror)
        return
    log.warning("%s was readable by others (mode %03o); now %03o, its owner's alone", path, mode, mode & 0o700)
