"""The DuckDB concept store: opening (with migrations), corpora and documents, encoders, and the
per-batch transactional writes of encoded documents. Analyses read it with plain SQL."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from saeembed.errors import InputError, StoreError
from saeembed.store import counts, dense
from saeembed.store.migrations import MIGRATIONS, STORE_FORMAT, latest_version
from saeembed.store.shard_layout import directory_state, is_shard_dir, read_header, read_manifest
from saeembed.store.shard_views import analysis_db, attach_shards, sync_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoder:
    """One row of the `encoders` table: a fully fingerprinted way of encoding documents."""

    encoder_id: int
    name: str
    fingerprint: str
    model: str
    layer: int
    sae: str
    sae_sha256: str
    d_sae: int
    max_tokens: int
    chat: str
    dtype: str = "float32"  # the reader's precision (part of the fingerprint)


# `documents` columns an incoming table may lack (NULL then): a response's context, and a chunk's
# parent document and position (saeembed.inputs.chunks)
_OPTIONAL_DOCUMENT_COLUMNS = {"context": pl.String, "parent_id": pl.Int64, "chunk_idx": pl.Int32}

_ENCODER_COLUMNS = (
    "encoder_id, name, fingerprint, model, layer, sae, sae_sha256, d_sae, max_tokens, chat, dtype"
)


def _row_of(source: str, row_idx: int) -> str:
    """Where row ``row_idx`` (0-based, among the data rows) of ``source`` is, as a person finds
    it: the line of a JSON-lines or text file, the data row of a table."""
    lines = re.search(r"\.(jsonl|ndjson|txt)(\.(gz|bz2|zst|xz))?$", source)
    return f"{source} {'line' if lines else 'row'} {row_idx + 1}"


def _lock_holder(message: str) -> str:
    """The process DuckDB names as holding a store's lock, as its command line when it can be
    read ("another process" otherwise)."""
    found = re.search(r"\(PID (\d+)\)", message)
    if not found:
        return "another process"
    pid = found.group(1)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"process {pid}"
    words = [Path(a.decode(errors="replace")).name if i == 0 else a.decode(errors="replace")
             for i, a in enumerate(argv) if a]  # fmt: skip
    command = " ".join(" ".join(words).split())  # one line, whatever the arguments hold
    return f"process {pid} ({command[:120]})" if command else f"process {pid}"


class Store:
    """A saeembed DuckDB database. Opening it applies pending migrations; a read-only open of an
    older store upgrades it first when the file is writable."""

    def __init__(self, path: str | Path, *, read_only: bool = False, create: bool = True):
        self.path = Path(path)
        self.read_only = read_only
        self._restricted = False  # set for good by restrict_sql
        # a shard directory (saeembed.shards): its analysis file, with views over the shards
        self.shard_root = self.path if self.path.is_dir() else None
        self.file = self._file_of(self.path)
        if self.shard_root is not None and not self.file.exists() and read_only:
            Store(self.path).close()  # a shard directory's lost analysis file: rebuild it
        if not self.file.exists() and (read_only or not create) and self.shard_root is None:
            raise StoreError(
                f"no store at {self.path}; create one with `saeembed encode FILE --db {self.path}`"
            )
        if self.file.exists():
            # recognised on a read-only connection first: another program's file is never written
            self.con = self._connect(read_only=True)
            kind = self._kind()
            if kind == "foreign":
                self.con.close()
                raise StoreError(
                    f"{self.path} is a DuckDB file but not a saeembed store (it has no saeembed "
                    "marker); pass the path of a saeembed store, or a new path to create one"
                )
            if not read_only:
                self.con.close()
                self.con = self._connect(read_only)
        else:
            kind = "empty"
            self.con = self._connect(read_only)
        version = self.schema_version() if read_only else None
        if read_only and version < latest_version() and os.access(self.file, os.W_OK):
            # an older store opened for reading: upgrade it once (migrations only add), then read
            self.con.close()
            Store(self.path).close()
            log.info("store %s upgraded to schema v%d", self.path, latest_version())
            self.con = self._connect(read_only)
        self._migrate(read_only)
        if self.shard_root is not None:
            self._attach_shards(read_only)

    @staticmethod
    def _file_of(path: Path) -> Path:
        """The DuckDB file behind ``path``: itself, or a shard directory's analysis file."""
        if not path.is_dir():
            return path
        if not is_shard_dir(path):
            if directory_state(path) == "unfinished":
                raise StoreError(
                    f"{path} is a shard directory whose creation was cut short (a kill or a "
                    "full disk); rerun the `saeembed encode FILE --out DIR` that made it"
                )
            raise StoreError(
                f"{path} is a directory but not a shard directory (no saeembed-shards.json); "
                "pass a .duckdb file, or a directory written by `saeembed encode --out DIR`"
            )
        return analysis_db(path)

    def _attach_shards(self, read_only: bool) -> None:

        if not read_only:
            with self.transaction() as con:
                sync_rows(con, read_header(self.shard_root))
        attach_shards(self.con, self.shard_root)

    @staticmethod
    def can_write(path: str | Path) -> bool:
        """Whether the store at ``path`` could be opened for writing (its file, or a shard
        directory's analysis file, is writable): commands that only cache (embeddings) read a
        store they cannot write instead of failing."""
        path = Path(path)
        file = Store._file_of(path) if path.is_dir() else path
        return os.access(file if file.exists() else file.parent, os.W_OK)

    def refresh_shards(self) -> None:
        """Re-read a shard directory's manifest (after shards were added)."""
        if self.shard_root is not None:
            self._attach_shards(self.read_only)

    def require_single_file(self, action: str) -> None:
        """Shard directories are written only by the shard encoder: a one-line error otherwise."""
        if self.shard_root is not None:
            raise StoreError(
                f"cannot {action}: {self.path} is a shard directory, written only by "
                f"`saeembed encode FILE --out {self.path}` (encode the file there first), or "
                f"import it into a single file (`saeembed store import {self.path} --db FILE`)"
            )

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(str(self.file), read_only=read_only)
        except duckdb.IOException as exc:
            message = str(exc).splitlines()[0]
            if "lock" in message.lower():
                raise StoreError(
                    f"{self.path} is in use by {_lock_holder(message)}; "
                    "retry when it has finished (or stop it)"
                ) from exc
            raise StoreError(f"cannot open {self.path} as a DuckDB store ({message})") from exc
        except duckdb.Error as exc:
            raise StoreError(
                f"cannot open {self.path} as a DuckDB store ({str(exc).splitlines()[0]})"
            ) from exc

    def restrict_sql(self) -> None:
        """From now on, SQL on this connection touches the store only: no other file is read or
        written (``read_text``, ``COPY ... TO``, ``ATTACH``), no extension is installed or loaded,
        and no query can undo this. For SQL that comes from a user (``saeembed sql``, ``--where``),
        which also passes `saeembed.store.user_sql.check_statements`."""
        if self._restricted:
            return
        self._restricted = True
        if self.shard_root is not None:
            # the listed shards stay readable, file by file: a directory in the allowed list
            # could be written too (COPY ... TO 'DIR/manifest.jsonl')

            base = self.shard_root.resolve()
            files = sorted(
                str(base / f.path) for s in read_manifest(self.shard_root) for f in s.files.values()
            )
            if files:
                listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
                self.con.execute(f"SET allowed_paths = [{listed}]")
        for setting in (
            "enable_external_access = false",
            "autoinstall_known_extensions = false",
            "autoload_known_extensions = false",
            "lock_configuration = true",
        ):
            self.con.execute(f"SET {setting}")

    # ---- lifecycle -------------------------------------------------------------------------
    @contextmanager
    def transaction(self, **tables) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction: committed if the block finishes, rolled back if it raises. Keyword
        arguments register Arrow/polars tables under those names for the block's duration."""
        with self.temporary(**tables) as con:
            con.begin()
            try:
                yield con
                con.commit()
            except BaseException:
                # a failed write (disk full, permission denied) may have ended the transaction
                # already: the error to show is the write's, not "no transaction is active"
                with contextlib.suppress(duckdb.Error):
                    con.rollback()
                raise

    @contextmanager
    def temporary(self, **tables) -> Iterator[duckdb.DuckDBPyConnection]:
        """Register tables (Arrow, polars, or dicts of columns) under these names for a block of
        reads, unregistering them afterwards."""
        for name, table in tables.items():
            self.con.register(name, pa.table(table) if isinstance(table, dict) else table)
        try:
            yield self.con
        finally:
            for name in tables:
                self.con.unregister(name)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def schema_version(self) -> int:
        exists = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        ).fetchall()[0][0]
        if not exists:
            return 0
        return self.con.execute(
            "SELECT coalesce(max(version), 0) FROM schema_migrations"
        ).fetchall()[0][0]

    def _migrate(self, read_only: bool) -> None:
        current = self.schema_version()
        if current > latest_version():
            raise StoreError(
                f"{self.path} has schema v{current}, newer than this saeembed knows (v{latest_version()}); "
                "upgrade saeembed (pip install -U saeembed)"
            )
        if current == latest_version():
            return
        if read_only:
            raise StoreError(
                f"{self.path} needs a schema upgrade (v{current} -> v{latest_version()}) but cannot "
                "be written; make it writable (chmod u+w) or work on a copy"
            )
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)"
        )
        for version, name, apply in MIGRATIONS:
            if version <= current:
                continue
            with self.transaction() as con:
                apply(con)
                con.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name]
                )
            log.info("store %s migrated to schema v%d (%s)", self.path, version, name)

    def _kind(self) -> str:
        """What the open file is: ``empty`` (no tables: new, or a create that was killed),
        ``saeembed`` (it has the `saeembed_store` marker, or, made before the marker, its
        `schema_migrations` rows are saeembed's own migrations), or ``foreign``."""
        tables = {
            r[0]
            for r in self.con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_catalog = current_database() AND table_schema = 'main'"
            ).fetchall()
        }
        if not tables:
            return "empty"
        try:
            if "saeembed_store" in tables:
                marked = self.con.execute(
                    "SELECT count(*) FROM saeembed_store WHERE format = ?", [STORE_FORMAT]
                ).fetchall()[0][0]
                return "saeembed" if marked == 1 else "foreign"
            if "schema_migrations" not in tables:
                return "foreign"
            applied = self.con.execute(
                "SELECT version, name FROM schema_migrations ORDER BY version"
            ).fetchall()
        except duckdb.Error:  # same names, other columns
            return "foreign"
        ours = [(v, name) for v, name, _ in MIGRATIONS[: len(applied)]]
        return "saeembed" if applied and applied == ours and "documents" in tables else "foreign"

    # ---- corpora and documents -------------------------------------------------------------
    def add_documents(
        self,
        corpus: str,
        docs: pl.DataFrame,
        *,
        source: str | None = None,
        text_col: str | None = None,
        id_col: str | None = None,
    ) -> int:
        """Insert the documents of ``docs`` (columns of `saeembed.inputs`, and optionally
        ``context``) not yet in ``corpus``; returns how many were new. One transaction: all or
        nothing."""
        self.require_single_file("add documents")
        with self.transaction(incoming_documents=self.incoming_documents(corpus, docs)) as con:
            return self.insert_documents(con, corpus, source, text_col, id_col)

    @staticmethod
    def incoming_documents(corpus: str, docs: pl.DataFrame) -> pl.DataFrame:
        """``docs`` with exactly the columns `insert_documents` reads (checked corpus name); the
        optional ``context``, ``parent_id`` and ``chunk_idx`` are NULL where ``docs`` lacks them."""
        if not corpus or not corpus.strip():
            raise StoreError("a corpus name cannot be empty; pass --corpus NAME")
        optional = [
            (pl.col(name) if name in docs.columns else pl.lit(None, dtype)).alias(name)
            for name, dtype in _OPTIONAL_DOCUMENT_COLUMNS.items()
        ]
        return docs.select("doc_id", "row_idx", "ext_id", "text", "meta", *optional)

    @staticmethod
    def insert_documents(
        con: duckdb.DuckDBPyConnection,
        corpus: str,
        source: str | None,
        text_col: str | None,
        id_col: str | None,
    ) -> int:
        """Inside a `transaction` with `incoming_documents` registered: add the corpus row and
        the documents not yet in it; returns how many were new.

        A corpus may grow from several sources: each is recorded in `corpus_sources`, and the
        rows of a source new to the corpus are numbered after the corpus's last row, so
        ``row_idx`` stays unique within a corpus (the same source again keeps its numbers). An
        id (``ext_id``) already given to another text of the corpus is an error naming the
        source and row: ids name one text per corpus, or pairing by id would count twice."""
        source = source or "<unknown>"
        con.execute(
            "INSERT INTO corpora (corpus, source, text_col, id_col) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [corpus, source, text_col, id_col],
        )
        clash = con.execute(
            """
            SELECT n.ext_id, n.row_idx FROM incoming_documents n
            JOIN documents d ON d.corpus = ? AND d.ext_id = n.ext_id
                -- the chunks of one document share its id
                AND coalesce(d.parent_id, d.doc_id) <> coalesce(n.parent_id, n.doc_id)
            ORDER BY n.row_idx LIMIT 1
            """,
            [corpus],
        ).fetchall()
        if clash:
            ext_id, row_idx = clash[0]
            raise InputError(
                f"{_row_of(source, row_idx)}: id {ext_id!r} already names another text in corpus "
                f"{corpus!r}; ids must be unique within a corpus: fix the id, or encode this "
                "file into another --corpus"
            )
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE new_corpus_docs AS SELECT DISTINCT n.doc_id
            FROM incoming_documents n
            WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.corpus = ? AND d.doc_id = n.doc_id)
            """,
            [corpus],
        )
        known = con.execute(
            "SELECT first_row FROM corpus_sources WHERE corpus = ? AND source = ?",
            [corpus, source],
        ).fetchall()
        first_row = (
            known[0][0]
            if known and not source.startswith("<")  # a DataFrame or list: new every call
            else con.execute(
                "SELECT coalesce(max(row_idx) + 1, 0) FROM documents WHERE corpus = ?", [corpus]
            ).fetchall()[0][0]
        )
        inserted = con.execute(
            """
            INSERT INTO documents
                (corpus, doc_id, row_idx, ext_id, text, meta, context, parent_id, chunk_idx)
            SELECT ?, n.doc_id, n.row_idx + ?, n.ext_id, n.text, n.meta, n.context, n.parent_id,
                n.chunk_idx
            FROM incoming_documents n SEMI JOIN new_corpus_docs k ON k.doc_id = n.doc_id
            """,
            [corpus, first_row],
        ).fetchall()[0][0]  # DuckDB returns the inserted row count
        if inserted or not known:
            con.execute(
                """
                INSERT INTO corpus_sources (corpus, source, first_row, n_documents)
                VALUES (?, ?, ?, ?) ON CONFLICT (corpus, source) DO UPDATE
                SET n_documents = corpus_sources.n_documents + excluded.n_documents
                """,
                [corpus, source, first_row, inserted],
            )
        counts.add_documents(con, corpus, "new_corpus_docs")  # encoded while in other corpora
        con.execute("DROP TABLE temp.new_corpus_docs")
        return inserted

    def count_documents(self, corpus: str) -> int:
        return self.con.execute(
            "SELECT count(*) FROM documents WHERE corpus = ?", [corpus]
        ).fetchall()[0][0]

    def corpora(self) -> list[str]:
        return [
            r[0] for r in self.con.execute("SELECT corpus FROM corpora ORDER BY corpus").fetchall()
        ]

    def require_corpus(self, corpus: str) -> str:
        known = self.corpora()
        if corpus not in known:
            have = ", ".join(known) or "none yet"
            raise StoreError(f"no corpus {corpus!r} in {self.path} (corpora: {have})")
        return corpus

    # ---- encoders --------------------------------------------------------------------------
    def get_or_create_encoder(self, fingerprint: str, fields: dict) -> tuple[Encoder, bool]:
        """The encoder with this fingerprint, creating it (with a readable unique name) if new."""
        found = self._encoder_where("fingerprint = ?", [fingerprint])
        if found:
            return found[0], False
        name = fields["name"]
        taken = {r[0] for r in self.con.execute("SELECT name FROM encoders").fetchall()}
        suffix = 2
        while name in taken:
            name = f"{fields['name']}-{suffix}"
            suffix += 1
        row = {**fields, "name": name, "fingerprint": fingerprint}
        row["config"] = json.dumps(row.get("config") or {}, sort_keys=True)
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.con.execute(f"INSERT INTO encoders ({cols}) VALUES ({marks})", list(row.values()))
        return self._encoder_where("fingerprint = ?", [fingerprint])[0], True

    def _encoder_where(self, where: str, params: list) -> list[Encoder]:
        rows = self.con.execute(
            f"SELECT {_ENCODER_COLUMNS} FROM encoders WHERE {where} ORDER BY encoder_id", params
        ).fetchall()
        return [Encoder(*r) for r in rows]

    def encoders(self) -> list[Encoder]:
        return self._encoder_where("true", [])

    def resolve_encoder(self, ref: str | int | None) -> Encoder:
        """An encoder by id or name; with no reference, the only encoder in the store."""
        known = self.encoders()
        if ref is None:
            if len(known) == 1:
                return known[0]
            if not known:
                raise StoreError(f"{self.path} has no encoders yet; run `saeembed encode` first")
            names = ", ".join(f"{e.encoder_id}={e.name}" for e in known)
            raise StoreError(
                f"{self.path} has several encoders ({names}); choose one with --encoder"
            )
        for enc in known:
            if str(enc.encoder_id) == str(ref) or enc.name == str(ref):
                return enc
        names = ", ".join(f"{e.encoder_id}={e.name}" for e in known) or "none"
        raise StoreError(f"no encoder {ref!r} in {self.path} (encoders: {names})")

    # ---- encoding progress -----------------------------------------------------------------
    def pending_documents(self, encoder_id: int, corpus: str, limit: int) -> pl.DataFrame:
        """Up to ``limit`` documents of ``corpus`` not yet encoded by ``encoder_id`` (file order,
        chunks in order within their document), with their context (NULL for most documents)."""
        return self.con.sql(
            """
            SELECT d.doc_id, d.text, d.context FROM documents d
            WHERE d.corpus = ? AND NOT EXISTS (
                SELECT 1 FROM encoded_documents e WHERE e.encoder_id = ? AND e.doc_id = d.doc_id)
            ORDER BY d.row_idx, d.chunk_idx, d.doc_id LIMIT ?
            """,
            params=[corpus, encoder_id, limit],
        ).pl()

    def count_pending(self, encoder_id: int, corpus: str, chars: bool = False) -> int:
        """Documents of ``corpus`` not yet encoded by ``encoder_id``; with ``chars``, their
        characters (what encoding time follows)."""
        what = "coalesce(sum(length(d.text)), 0)" if chars else "count(*)"
        return self.con.execute(
            f"""
            SELECT {what} FROM documents d WHERE d.corpus = ? AND NOT EXISTS (
                SELECT 1 FROM encoded_documents e WHERE e.encoder_id = ? AND e.doc_id = d.doc_id)
            """,
            [corpus, encoder_id],
        ).fetchall()[0][0]

    def write_encoded(
        self,
        encoder_id: int,
        encoded: pa.Table,
        activations: pa.Table,
        dense_vectors: pa.Table | None = None,
    ) -> None:
        """Store one batch in one transaction: the `encoded_documents` rows, their activations
        and, when given, their dense vectors (`saeembed.store.dense`).

        A document already encoded by this encoder (a concurrent or repeated run) makes the whole
        batch roll back instead of duplicating rows."""
        self.require_single_file("encode into it")
        tables = {"batch_encoded": encoded, "batch_activations": activations}
        if dense_vectors is not None:
            tables["batch_dense"] = dense_vectors
        with self.transaction(**tables) as con:
            con.execute(
                "INSERT INTO encoded_documents (encoder_id, doc_id, n_tokens, truncated, n_features) "
                "SELECT ?, doc_id, n_tokens, truncated, n_features FROM batch_encoded",
                [encoder_id],
            )
            con.execute(
                "INSERT INTO activations (encoder_id, doc_id, feature, value, n_tokens, peak_token, "
                "peak_start, peak_end, value_sum) SELECT ?, doc_id, feature, value, n_tokens, "
                "peak_token, peak_start, peak_end, value_sum FROM batch_activations",
                [encoder_id],
            )
            if dense_vectors is not None:
                dense.insert_batch(con, encoder_id)
            counts.add_batch(con, encoder_id)  # in the same transaction as the rows

    # ---- reading ---------------------------------------------------------------------------
    def encoded_doc_ids(
        self, encoder: Encoder, corpus: str | None = None, max_docs: int | None = None
    ) -> np.ndarray:
        """Sorted ids of the documents ``encoder`` has encoded (of ``corpus``, if given); beyond
        ``max_docs`` a sample fixed by a hash of the document id, the same on every call."""
        if corpus is not None:
            self.require_corpus(corpus)
        sample = "ORDER BY hash(e.doc_id), e.doc_id LIMIT $limit" if max_docs else ""
        ids = self.sql(
            f"""
            SELECT DISTINCT e.doc_id FROM encoded_documents e
            WHERE e.encoder_id = $enc
              AND ($corpus IS NULL OR e.doc_id IN (SELECT doc_id FROM documents WHERE corpus = $corpus))
            {sample}
            """,
            {
                "enc": encoder.encoder_id,
                "corpus": corpus,
                **({"limit": max_docs} if max_docs else {}),
            },
        )["doc_id"].to_numpy()
        if len(ids) == 0:
            where = f" in corpus {corpus!r}" if corpus else ""
            raise StoreError(
                f"encoder {encoder.name} has no encoded documents{where}; run `saeembed encode` first"
            )
        return np.sort(ids)

    def texts(self, doc_ids) -> pl.DataFrame:
        """``doc_id, text`` of these documents (and of no others; each id once, in no set
        order). ``doc_ids``: any sequence, array or Series of ids."""
        wanted = {"doc_id": pa.array(np.asarray(doc_ids, dtype=np.int64))}
        with self.temporary(wanted_docs=wanted):
            return self.sql(
                "SELECT doc_id, any_value(text) AS text FROM documents "
                "WHERE doc_id IN (SELECT doc_id FROM wanted_docs) GROUP BY doc_id"
            )

    def sql(self, query: str, params: dict | list | None = None) -> pl.DataFrame:
        """Run SQL with bound parameters (``$name`` or ``?``) and return a polars DataFrame."""
        try:
            relation = self.con.sql(query, params=params or None)
            return relation.pl() if relation is not None else pl.DataFrame()
        except duckdb.Error as exc:
            raise StoreError(f"SQL error: {str(exc).splitlines()[0]}") from exc
