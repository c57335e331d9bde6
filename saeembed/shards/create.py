"""Creating a shard directory, safe against a kill, a full disk and two first runs at once.

Creation writes, in this order: the directory; the lock file ``.saeembed-shards.lock`` (the
creating process's PID, held with ``flock`` while it creates); ``analysis.duckdb`` with the
encoder row; the header, atomically; and then it removes the lock file. Until the header exists
the directory is not a shard directory.

- A directory that holds only what creation writes (the lock file, ``analysis.duckdb`` with its
  ``.wal`` and ``.tmp``, hidden ``.NAME....tmp`` / ``.partial`` temporary files, empty folders)
  and no header is a creation cut short (a kill -9, a full disk): the next run clears it and
  creates it afresh, so it ends equal to a directory created in one go. An ``analysis.duckdb``
  that holds rows (documents, labels, ...) or is not a saeembed store makes the directory
  foreign: it is refused and nothing is deleted.
- Creation holds the lock, so two first runs never both create: the second waits for the first
  (at most `CREATE_WAIT_S`) and then finds the header, or says which process is creating the
  directory. A failed creation (a full disk) removes what it wrote."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from saeembed.errors import InputError
from saeembed.store.shard_layout import (
    ANALYSIS_DB,
    HEADER,
    LOCK,
    directory_state,
    written_by_creation,
)

try:
    import fcntl
except ImportError:  # no flock (Windows): creation is not guarded against a racing run
    fcntl = None

log = logging.getLogger(__name__)

CREATE_WAIT_S = 30.0  # how long a run waits for another run that creates the same directory
# tables of the analysis file that hold something a person would miss; creation writes none
_DATA_TABLES = ("corpora", "documents", "encoded_documents", "activations", "concept_counts",
                "features", "feature_thresholds", "clusterings", "pair_sets", "text_embeddings",
                "corpus_sources")  # fmt: skip
_UNREADABLE_MAX_BYTES = 64 << 20  # an unreadable analysis file up to this size is a cut create
_FOREIGN = "{root} holds other files and is not a shard directory; choose a new or empty --out"


def refuse_foreign(root: Path) -> None:
    """The one-line refusal of a directory that holds files saeembed did not write."""
    raise InputError(_FOREIGN.format(root=root))


def create(root: Path, build: Callable[[Path], None]) -> None:
    """Make ``root`` a shard directory with ``build(root)`` (which writes the analysis file and,
    last, the header), unless another run did meanwhile; clears a creation cut short first."""
    made = not root.exists()
    deadline = time.monotonic() + CREATE_WAIT_S
    lock, waited = root / LOCK, False
    while not (root / HEADER).is_file():
        root.mkdir(parents=True, exist_ok=True)  # again: a racing run's failed create removes it
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_lock(fd):
                if not waited:
                    log.info("%s is being created by %s; waiting for it", root, _holder(lock))
                    waited = True
                if time.monotonic() > deadline:
                    raise InputError(
                        f"{root} is being created by {_holder(lock)}; retry when it has finished"
                    )
                time.sleep(0.05)
                continue
            if not _same_file(lock, fd):
                continue  # the creator finished and removed it while this run waited: look again
            try:
                if not (root / HEADER).is_file():
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())  # for a waiting run's message
                    _clear_unfinished(root)
                    _build(root, build, made)
            finally:
                _remove(lock)  # before the lock is released: a waiter then sees it gone
        finally:
            os.close(fd)  # releases the lock


def _build(root: Path, build: Callable[[Path], None], made: bool) -> None:
    try:
        build(root)
    except BaseException:
        # a failed creation (a full disk, an interrupt) takes back what it wrote
        for path in root.iterdir():
            if path.name != LOCK and written_by_creation(path):
                _remove(path)
        if made:
            _remove(root / LOCK)
            with contextlib.suppress(OSError):
                root.rmdir()
        raise


def _clear_unfinished(root: Path) -> None:
    """Remove what a creation cut short left (under the lock); refuse anything else."""
    state = directory_state(root)
    if state == "foreign" or (state == "unfinished" and not _holds_nothing(root)):
        refuse_foreign(root)
    left = [p for p in root.iterdir() if p.name != LOCK]
    if not left:
        return
    log.warning("%s: its creation was cut short (a kill or a full disk); creating it afresh", root)
    for path in left:
        _remove(path)


def _holds_nothing(root: Path) -> bool:
    """Whether the analysis file of an unfinished directory holds only what creation writes (the
    schema and at most the encoder row), or could not be written whole (a small file that does
    not open): then it may be deleted."""
    file = root / ANALYSIS_DB
    if not file.is_file():
        return True
    import duckdb

    try:
        con = duckdb.connect(str(file), read_only=True)
    except duckdb.Error as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "lock" in message.lower():
            raise InputError(
                f"{root} is being created by another process ({message}); retry when it has "
                "finished"
            ) from None
        return file.stat().st_size <= _UNREADABLE_MAX_BYTES
    try:
        tables = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()
        }
        if not tables:
            return True  # killed before its schema was committed
        if not tables & {"schema_migrations", "saeembed_store"}:
            return False  # another program's database
        for table in tables.intersection(_DATA_TABLES):
            if con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]:
                return False
        if "encoders" in tables:
            return con.execute("SELECT count(*) FROM encoders").fetchone()[0] <= 1
        return True
    except duckdb.Error:
        return False
    finally:
        con.close()


def _try_lock(fd: int) -> bool:
    """Take the creation lock without waiting; True where the file system has no locks."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return True
        raise
    return True


def _same_file(path: Path, fd: int) -> bool:
    try:
        linked = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (linked.st_dev, linked.st_ino) == (held.st_dev, held.st_ino)


def _holder(lock: Path) -> str:
    """The creating process, as its PID and command line when they can be read."""
    try:
        pid = int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return "another process"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"process {pid}"
    command = " ".join(a.decode(errors="replace") for a in argv if a)
    return f"process {pid} ({command[:120]})" if command else f"process {pid}"


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.debug("could not remove %s: %s", path, e)
