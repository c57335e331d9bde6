"""The store commands: what a store holds (`info`), SQL and named queries on it (`sql`,
`queries`). Each is a thin shell over one call of `saeembed.api.corpus`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from saeembed.api import corpus as api
from saeembed.api.defaults import DEFAULT_TIMEOUT
from saeembed.cli.options import domain_errors, format_option, note
from saeembed.cli.render import default_format, render

TERMINAL_ROWS = 1_000  # rows `sql` prints as a table unless --max-rows says otherwise
PIPED_ROWS = 1_000_000  # ... and as csv, json or jsonl


@click.command()
@click.argument("db", type=click.Path(path_type=Path))
@click.argument("query")
@click.option(
    "-p",
    "--param",
    "params",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="Bind a parameter ($NAME in the SQL); repeatable.",
)
@click.option(
    "--allow-files",
    is_flag=True,
    help="Let the query read and write other files, load extensions and run several "
    "statements (off: it reads the store only).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Stop the query after this many seconds (0: never).",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=0),
    default=None,
    help=f"Print at most this many rows (0: all) [default: {TERMINAL_ROWS:,} as a table, "
    f"{PIPED_ROWS:,} otherwise].",
)
@format_option
@domain_errors
def sql(db, query, params, allow_files, timeout, max_rows, fmt):
    """Run QUERY against the store DB and print the rows.

    QUERY is SQL text, `@file.sql`, or the name of a named query (see `saeembed queries`).
    Parameters are bound, never pasted into the SQL: `-p feature 12` binds $feature. The query
    reads the store only: one SELECT (or EXPLAIN, DESCRIBE, PRAGMA), no other file, no
    extension, no writes, unless --allow-files. Ctrl-C stops it at once."""
    fmt = fmt or default_format()
    if max_rows is None:
        max_rows = TERMINAL_ROWS if fmt == "table" else PIPED_ROWS
    try:
        found = api.sql(
            db, query, dict(params), allow_files=allow_files, timeout=timeout or None,
            max_rows=max_rows, result=True,
        )  # fmt: skip
    except KeyboardInterrupt:
        # the query is read-only: nothing to clean up, so leave at once even if DuckDB is slow
        # to notice the interrupt
        click.echo("Error: interrupted (Ctrl-C); the query was stopped", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    render(found.frame, fmt)
    if found.truncated:
        note(
            f"saeembed: showing the first {found.max_rows:,} rows; more matched (--max-rows 0 "
            "prints them all; add LIMIT or narrow the query)",
        )


@click.command("queries")
@format_option
@domain_errors
def list_queries(fmt):
    """List the named queries and their parameters."""
    render(api.named_query_table(), fmt)


@click.command()
@click.argument("db", type=click.Path(path_type=Path))
@format_option
@domain_errors
def info(db, fmt):
    """List the corpora and encoders in DB, with document, token and activation counts."""
    for title, frame in api.info(db).items():
        render(frame, fmt, title=title)


@click.group()
def store():
    """Move data between store kinds."""


@store.command("import")
@click.argument("shards", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--db", required=True, type=click.Path(path_type=Path), help="DuckDB store to fill.")
@domain_errors
def import_shards(shards, db):
    """Load the shard directory SHARDS (written by `encode --out`) into the store DB: corpora,
    documents, the encoder, its activations and labels, in one transaction. Repeatable: what
    the store holds already is not added twice."""
    note(api.import_shards(shards, db).summary())


COMMANDS = [sql, list_queries, info, store]
