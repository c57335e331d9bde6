"""The store's schema as numbered migrations, applied in order on open and recorded in the
`schema_migrations` table. Never edit a released migration: add the next number.
The resulting schema is documented column by column in docs/schema.md."""

from __future__ import annotations

from collections.abc import Callable

import duckdb

Migration = Callable[[duckdb.DuckDBPyConnection], None]
MIGRATIONS: list[tuple[int, str, Migration]] = []


def migration(version: int, name: str) -> Callable[[Migration], Migration]:
    def register(fn: Migration) -> Migration:
        if any(v == version for v, _, _ in MIGRATIONS):
            raise ValueError(f"duplicate migration number {version}")
        MIGRATIONS.append((version, name, fn))
        MIGRATIONS.sort(key=lambda m: m[0])
        return fn

    return register


@migration(1, "initial")
def _initial(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE corpora (
            corpus      VARCHAR PRIMARY KEY,
            source      VARCHAR,
            text_col    VARCHAR,
            id_col      VARCHAR,
            created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE documents (
            corpus   VARCHAR NOT NULL,
            doc_id   BIGINT  NOT NULL,
            row_idx  BIGINT  NOT NULL,
            ext_id   VARCHAR,
            text     VARCHAR NOT NULL,
            meta     JSON,
            PRIMARY KEY (corpus, doc_id)
        );
        CREATE SEQUENCE encoder_id_seq START 1;
        CREATE TABLE encoders (
            encoder_id        INTEGER PRIMARY KEY DEFAULT nextval('encoder_id_seq'),
            name              VARCHAR NOT NULL UNIQUE,
            fingerprint       VARCHAR NOT NULL UNIQUE,
            model             VARCHAR NOT NULL,
            model_revision    VARCHAR,
            layer             INTEGER NOT NULL,
            sae               VARCHAR NOT NULL,
            sae_sha256        VARCHAR NOT NULL,
            d_sae             INTEGER NOT NULL,
            activation        VARCHAR NOT NULL,
            k                 INTEGER,
            pooling           VARCHAR NOT NULL,
            max_tokens        INTEGER NOT NULL,
            truncation        VARCHAR NOT NULL,
            dtype             VARCHAR NOT NULL,
            chat              VARCHAR NOT NULL,
            prefix            VARCHAR NOT NULL,
            encoding_version  INTEGER NOT NULL,
            saeembed_version  VARCHAR NOT NULL,
            config            JSON,
            created_at        TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE encoded_documents (
            encoder_id  INTEGER NOT NULL,
            doc_id      BIGINT  NOT NULL,
            n_tokens    INTEGER NOT NULL,
            truncated   BOOLEAN NOT NULL,
            n_features  INTEGER NOT NULL,
            encoded_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (encoder_id, doc_id)
        );
        CREATE TABLE activations (
            encoder_id  INTEGER NOT NULL,
            doc_id      BIGINT  NOT NULL,
            feature     INTEGER NOT NULL,
            value       REAL    NOT NULL,
            n_tokens    INTEGER NOT NULL,
            peak_token  INTEGER NOT NULL,
            peak_start  INTEGER,
            peak_end    INTEGER
        );
        CREATE TABLE features (
            encoder_id    INTEGER NOT NULL,
            feature       INTEGER NOT NULL,
            label         VARCHAR,
            description   VARCHAR,
            label_source  VARCHAR,
            label_score   DOUBLE,
            PRIMARY KEY (encoder_id, feature)
        );
        """
    )


@migration(2, "feature label evidence")
def _label_evidence(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        ALTER TABLE features ADD COLUMN density DOUBLE;
        ALTER TABLE features ADD COLUMN n_docs INTEGER;
        ALTER TABLE features ADD COLUMN examples JSON;
        ALTER TABLE features ADD COLUMN labelled_at TIMESTAMP;
        """
    )


@migration(3, "preference pairs and document context")
def _pairs(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        ALTER TABLE documents ADD COLUMN context VARCHAR;
        CREATE TABLE pair_sets (
            pairs       VARCHAR PRIMARY KEY,
            corpus      VARCHAR NOT NULL,
            source      VARCHAR,
            context     BOOLEAN NOT NULL,
            created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE pairs (
            pairs            VARCHAR NOT NULL,
            pair_id          BIGINT  NOT NULL,
            prompt           VARCHAR NOT NULL,
            doc_a            BIGINT  NOT NULL,
            doc_b            BIGINT  NOT NULL,
            label            DOUBLE  NOT NULL,
            annotator        VARCHAR,
            conversation_id  VARCHAR,
            prompt_group     BIGINT  NOT NULL,
            PRIMARY KEY (pairs, pair_id)
        );
        CREATE TABLE pair_labels (
            pairs       VARCHAR NOT NULL,
            pair_id     BIGINT  NOT NULL,
            relabel     VARCHAR NOT NULL,
            label       DOUBLE,
            decision    VARCHAR NOT NULL,
            note        VARCHAR,
            decided_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (pairs, pair_id, relabel)
        );
        CREATE TABLE pair_saes (
            encoder_id  INTEGER PRIMARY KEY,
            pairs       VARCHAR NOT NULL,
            embedder    VARCHAR NOT NULL,
            weights     BLOB    NOT NULL
        );
        CREATE TABLE text_embeddings (
            embedder  VARCHAR NOT NULL,
            doc_id    BIGINT  NOT NULL,
            vector    FLOAT[] NOT NULL,
            PRIMARY KEY (embedder, doc_id)
        );
        CREATE TABLE pair_activations (
            encoder_id  INTEGER NOT NULL,
            pairs       VARCHAR NOT NULL,
            pair_id     BIGINT  NOT NULL,
            feature     INTEGER NOT NULL,
            value       REAL    NOT NULL
        );
        """
    )


@migration(4, "clusterings")
def _clusterings(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE SEQUENCE clustering_id_seq START 1;
        CREATE TABLE clusterings (
            clustering_id  INTEGER PRIMARY KEY DEFAULT nextval('clustering_id_seq'),
            name           VARCHAR NOT NULL UNIQUE,
            encoder_id     INTEGER NOT NULL,
            corpus         VARCHAR,
            method         VARCHAR NOT NULL,
            params         JSON    NOT NULL,
            concepts       JSON    NOT NULL,
            n_clusters     INTEGER NOT NULL,
            outlier_share  DOUBLE  NOT NULL,
            created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE clusters (
            clustering_id  INTEGER NOT NULL,
            cluster        INTEGER NOT NULL,
            name           VARCHAR,
            size           INTEGER NOT NULL,
            top_features   JSON,
            PRIMARY KEY (clustering_id, cluster)
        );
        CREATE TABLE cluster_members (
            clustering_id  INTEGER NOT NULL,
            doc_id         BIGINT  NOT NULL,
            cluster        INTEGER NOT NULL,
            assigned       BOOLEAN NOT NULL,
            x              REAL,
            y              REAL,
            PRIMARY KEY (clustering_id, doc_id)
        );
        """
    )


@migration(5, "activation sums")
def _activation_sums(con: duckdb.DuckDBPyConnection) -> None:
    # The sum of a concept's activations over the document's tokens, beside the maximum and the
    # active-token count; NULL for documents encoded before encoding version 2.
    con.execute("ALTER TABLE activations ADD COLUMN value_sum REAL")


@migration(6, "strong-presence thresholds")
def _feature_thresholds(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE feature_thresholds (
            encoder_id      INTEGER NOT NULL,
            feature         INTEGER NOT NULL,
            p99             REAL    NOT NULL,
            n_docs          BIGINT  NOT NULL,
            reference_docs  BIGINT  NOT NULL,
            computed_at     TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (encoder_id, feature)
        );
        """
    )


@migration(7, "document chunks")
def _document_chunks(con: duckdb.DuckDBPyConnection) -> None:
    # A chunk (encode --chunk-tokens N) is an ordinary document that records the doc_id its whole
    # document would have had and its 0-based position in it; NULL for documents not chunked.
    con.execute(
        """
        ALTER TABLE documents ADD COLUMN parent_id BIGINT;
        ALTER TABLE documents ADD COLUMN chunk_idx INTEGER;
        """
    )


@migration(8, "feature evidence embeddings")
def _feature_evidence(con: duckdb.DuckDBPyConnection) -> None:
    # Per feature, the unit mean sentence embedding of the contexts it peaks in (its evidence),
    # so a phrase can find the feature by what it fires on and not only by its label's words.
    # Kept apart from `features` so relabelling never drops it.
    con.execute(
        """
        CREATE TABLE feature_evidence (
            encoder_id  INTEGER NOT NULL,
            feature     INTEGER NOT NULL,
            model       VARCHAR NOT NULL,
            embedding   FLOAT[] NOT NULL,
            n_contexts  INTEGER,
            computed_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (encoder_id, feature)
        );
        """
    )


@migration(9, "kept concept counts")
def _concept_counts(con: duckdb.DuckDBPyConnection) -> None:
    # Per encoder, corpus and binary measure, the documents having each concept (feature -1:
    # the corpus's encoded documents), kept up to date by the writes (saeembed.store.counts).
    from saeembed.store.counts import KEPT_MEASURES, has_thresholds, recount

    con.execute(
        """
        CREATE TABLE concept_counts (
            encoder_id  INTEGER NOT NULL,
            corpus      VARCHAR NOT NULL,
            measure     VARCHAR NOT NULL,
            feature     INTEGER NOT NULL,
            n_docs      BIGINT  NOT NULL,
            PRIMARY KEY (encoder_id, corpus, measure, feature)
        );
        """
    )
    for (encoder_id,) in con.execute("SELECT encoder_id FROM encoders").fetchall():
        measures = KEPT_MEASURES if has_thresholds(con, encoder_id) else ("presence",)
        recount(con, encoder_id, measures)


# What marks a DuckDB file as a saeembed store: the one row of `saeembed_store`. A file without it
# is recognised as saeembed's only when its `schema_migrations` rows are saeembed's own (stores
# made before the marker); anything else is not a saeembed store and is never written.
STORE_FORMAT = "saeembed-store"


@migration(10, "store marker and corpus sources")
def _marker_and_sources(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE saeembed_store (
            format      VARCHAR NOT NULL,
            created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE corpus_sources (
            corpus      VARCHAR NOT NULL,
            source      VARCHAR NOT NULL,
            first_row   BIGINT  NOT NULL,
            n_documents BIGINT  NOT NULL,
            added_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (corpus, source)
        );
        """
    )
    con.execute("INSERT INTO saeembed_store (format) VALUES (?)", [STORE_FORMAT])
    # every corpus so far came from the one source its `corpora` row names
    con.execute(
        """
        INSERT INTO corpus_sources (corpus, source, first_row, n_documents)
        SELECT c.corpus, coalesce(c.source, '<unknown>'), 0,
            (SELECT count(*) FROM documents d WHERE d.corpus = c.corpus)
        FROM corpora c
        """
    )


@migration(11, "local concept names")
def _local_names(con: duckdb.DuckDBPyConnection) -> None:
    # A concept named from the store's own documents (saeembed.labels.local) keeps the name that
    # shipped with its SAE beside it, with how well that name fits the store, and the evidence
    # (what it fires on here) the local name was made from.
    con.execute(
        """
        ALTER TABLE features ADD COLUMN IF NOT EXISTS shipped_label VARCHAR;
        ALTER TABLE features ADD COLUMN IF NOT EXISTS shipped_source VARCHAR;
        ALTER TABLE features ADD COLUMN IF NOT EXISTS shipped_score DOUBLE;
        ALTER TABLE features ADD COLUMN IF NOT EXISTS local_evidence JSON;
        ALTER TABLE features ADD COLUMN IF NOT EXISTS named_at TIMESTAMP;
        """
    )


@migration(12, "concepts alike")
def _alike(con: duckdb.DuckDBPyConnection) -> None:
    # A concept that fires on the same things in this store as a better-evidenced one names it
    # (saeembed.labels.alike); tables fold it into that one.
    con.execute("ALTER TABLE features ADD COLUMN IF NOT EXISTS alike_of INTEGER")


@migration(13, "dictionary kind and site")
def _dictionary_site(con: duckdb.DuckDBPyConnection) -> None:
    # What kind of dictionary an encoder uses (a residual SAE, a transcoder, a semi-NMF of the
    # MLP) and where in its block it reads (saeembed.sites); encoders made before are residual
    # SAEs, unless their recorded SAE config says otherwise.
    con.execute(
        """
        ALTER TABLE encoders ADD COLUMN IF NOT EXISTS kind VARCHAR DEFAULT 'sae';
        ALTER TABLE encoders ADD COLUMN IF NOT EXISTS site VARCHAR DEFAULT 'resid';
        UPDATE encoders SET
            site = coalesce(config->'sae_cfg'->>'site', 'resid'),
            kind = CASE WHEN activation = 'snmf' THEN 'snmf'
                        WHEN config->'sae_cfg'->>'output_site' IS NOT NULL THEN 'transcoder'
                        ELSE 'sae' END;
        UPDATE encoders SET site = site || '->' || (config->'sae_cfg'->>'output_site')
        WHERE kind = 'transcoder';
        """
    )


@migration(14, "dense site vectors")
def _dense_vectors(con: duckdb.DuckDBPyConnection) -> None:
    # Per (encoder, document), on request (`encode --keep-dense`): the reader's activations at the
    # encoder's site, mean-pooled over the tokens its SAE pools, as float32 (the dense baseline
    # of a concept probe). Written in the same transaction as the document's encoding.
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS dense_vectors (
            encoder_id  INTEGER NOT NULL,
            doc_id      BIGINT  NOT NULL,
            n_tokens    INTEGER NOT NULL,
            vector      FLOAT[] NOT NULL,
            PRIMARY KEY (encoder_id, doc_id)
        );
        """
    )


def latest_version() -> int:
    return MIGRATIONS[-1][0]
