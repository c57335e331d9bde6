"""SQL that comes from a user (`saeembed sql`, named queries, `search --where`): what it may be,
the connection it runs on, and how it runs.

- **The connection** (`open_user_store`): the store opened read-only, then restricted for good
  (`Store.restrict_sql`): no file but the store's own is read, none is written, no extension is
  loaded, and no setting can be changed back. For a shard directory the readable files are
  exactly the Parquet files its manifest lists, never the directory.
- **The statements** (`check_statements`): one query that reads — ``SELECT`` (with ``WITH``,
  ``FROM``, ``VALUES``, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``), ``EXPLAIN`` of one, ``PRAGMA`` or
  ``CALL``. ``COPY``, ``EXPORT``, ``ATTACH``, ``SET``, ``INSTALL``, writes and a second statement
  are refused before anything runs, whatever the connection allows. ``allow_files`` lifts both.
- **Running** (`run_user_query`): on a worker thread, so that Ctrl-C reaches the caller at once
  (the query is interrupted and `KeyboardInterrupt` raised within about a second); a ``timeout``
  interrupts it the same way; at most ``max_rows`` rows are fetched (DuckDB stops there), and the
  result says whether more were left.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from saeembed.errors import InputError, StoreError
from saeembed.sql_values import relation_frame
from saeembed.store.store import Store

READING = {
    duckdb.StatementType.SELECT,
    duckdb.StatementType.EXPLAIN,
    duckdb.StatementType.PRAGMA,
    duckdb.StatementType.CALL,
}
_EXPLAIN = re.compile(
    r"^\s*explain\s+(?:\([^)]*\)\s*)?(?:analy[sz]e\s+)?", re.IGNORECASE | re.DOTALL
)
log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 600.0  # seconds
POLL = 0.05  # seconds between looks at the worker (and at Ctrl-C)


@dataclass
class QueryResult:
    """The rows a user query returned, at most ``max_rows`` of them; ``truncated`` when the
    query had more."""

    frame: pl.DataFrame
    truncated: bool = False
    max_rows: int | None = None


def check_statements(query: str) -> None:
    """Refuse ``query`` unless it is one statement that only reads (see the module docstring);
    a one-line `InputError` names what was refused and how to get it."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise StoreError(f"SQL error: {str(exc).splitlines()[0]}") from None
    if not statements:
        raise InputError("the query holds no SQL statement; pass a SELECT")
    if len(statements) > 1:
        raise InputError(
            f"one statement at a time ({len(statements)} given); run them one by one, or pass "
            "--allow-files to run a script"
        )
    (statement,) = statements
    kind = statement.type
    if kind == duckdb.StatementType.EXPLAIN:
        inner = _EXPLAIN.sub("", statement.query, count=1)
        if inner.strip() == statement.query.strip():
            return  # cannot see inside: EXPLAIN's plan of a reading query is all it can show
        check_statements(inner)
        return
    if kind not in READING:
        name = kind.name.replace("_", " ")
        raise InputError(
            f"{name} statements are refused: queries on a store only read it; select rows "
            "(and write files only with --allow-files)"
        )


@contextmanager
def open_user_store(db: str | Path, *, allow_files: bool = False):
    """The store at ``db`` opened for user SQL: read-only and, unless ``allow_files``,
    restricted for good (`Store.restrict_sql`)."""
    store = Store(db, read_only=True)
    try:
        if not allow_files:
            store.restrict_sql()
        yield store
    finally:
        # a query stopped by Ctrl-C may still be unwinding on its thread: closing is then
        # refused ("connection is busy"), and the process is about to end anyway
        with contextlib.suppress(duckdb.Error):
            store.close()


def run_user_query(
    store: Store,
    query: str,
    params: dict | list | None = None,
    *,
    allow_files: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_rows: int | None = None,
) -> QueryResult:
    """Run ``query`` from a user on ``store`` (see the module docstring). ``timeout`` in seconds
    (None or 0: none); ``max_rows`` None or 0: every row."""
    if not allow_files:
        check_statements(query)
    if timeout is not None and not timeout >= 0:
        raise InputError(f"--timeout must be 0 (none) or a number of seconds, not {timeout}")
    if max_rows is not None and max_rows < 0:
        raise InputError(f"--max-rows must be 0 (every row) or more, not {max_rows}")
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["result"] = _fetch(store, query, params, max_rows or None)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="saeembed-user-sql", daemon=True)
    started = time.monotonic()
    log.debug("running the query on %s (Ctrl-C stops it)", store.path)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(POLL)
            if timeout and worker.is_alive() and time.monotonic() - started > timeout:
                _stop(store, worker)
                raise StoreError(
                    f"the query ran past the timeout of {timeout:g} s and was stopped; narrow "
                    "it, or raise --timeout (0 for none)"
                )
    except KeyboardInterrupt:
        _stop(store, worker)
        raise
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, duckdb.Error):
            raise StoreError(f"SQL error: {str(error).splitlines()[0]}") from None
        raise error
    return outcome["result"]


def _fetch(store: Store, query: str, params, max_rows: int | None) -> QueryResult:
    relation = store.con.sql(query, params=params or None)
    if relation is None:  # a statement with no result
        return QueryResult(pl.DataFrame())
    if max_rows:
        relation = relation.limit(max_rows + 1)  # DuckDB stops after one row too many
    frame = relation_frame(relation)  # types polars cannot hold arrive as text
    if max_rows and frame.height > max_rows:
        return QueryResult(frame.head(max_rows), truncated=True, max_rows=max_rows)
    return QueryResult(frame, max_rows=max_rows)


def _stop(store: Store, worker: threading.Thread) -> None:
    """Interrupt the running query and give the worker a moment to return."""
    store.con.interrupt()
    worker.join(1.0)
