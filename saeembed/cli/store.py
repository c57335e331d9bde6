"""The store commands: what a store holds (`info`), SQL and named queries on it (`sql`,
`queries`). Each is a thin shell over one call of `saeembed.api.corpus`."""

from __future__ import annotations

from pathlib import Path

import click

from saeembed.api import corpus as api
from saeembed.cli.options import domain_errors, format_option
from saeembed.render import render


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
    help="Let the query read and write other files and load extensions (off: the store only).",
)
@format_option
@domain_errors
def sql(db, query, params, allow_files, fmt):
    """Run QUERY against the store DB and print the rows.

    QUERY is SQL text, `@file.sql`, or the name of a named query (see `saeembed queries`).
    Parameters are bound, never pasted into the SQL: `-p feature 12` binds $feature. The query
    sees the store only (no other file, no extension) unless --allow-files."""
    render(api.sql(db, query, dict(params), allow_files=allow_files), fmt)


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
    click.echo(api.import_shards(shards, db).summary(), err=True)


COMMANDS = [sql, list_queries, info, store]
