"""Named, reusable SQL: the files in `queries/` (shipped as package data), their documented
parameters, and running them against a store with bound parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from saeembed.errors import StoreError
from saeembed.store import Store

_PARAM = re.compile(r"^--\s*param\s+(\w+)\s*:\s*(.*)$")


def queries_dir() -> Path:
    """`saeembed/queries` in an installed wheel, `queries/` at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "queries", here.parent / "queries"):
        if candidate.is_dir():
            return candidate
    raise StoreError(
        "saeembed's queries/ folder is missing from this installation; reinstall saeembed"
    )


@dataclass(frozen=True)
class Param:
    name: str
    help: str
    optional: bool


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    params: tuple[Param, ...]
    sql: str


def parse_query(path: Path) -> NamedQuery:
    """Read a query file: leading ``--`` lines describe it, ``-- param NAME: help`` lines declare
    its parameters ("(optional" in the help makes one optional: it binds NULL when not given)."""
    lines = path.read_text().splitlines()
    description, params = [], []
    for line in lines:
        if not line.startswith("--"):
            break
        match = _PARAM.match(line)
        if match:
            params.append(Param(match[1], match[2], "(optional" in match[2]))
        else:
            description.append(line.lstrip("-").strip())
    return NamedQuery(path.stem, " ".join(description), tuple(params), "\n".join(lines))


def named_queries() -> dict[str, NamedQuery]:
    return {p.stem: parse_query(p) for p in sorted(queries_dir().glob("*.sql"))}


def get_query(name: str) -> NamedQuery:
    known = named_queries()
    if name not in known:
        raise StoreError(
            f"no named query {name!r}; known: {', '.join(known)} (see `saeembed queries`)"
        )
    return known[name]


def coerce_value(value: object) -> object:
    """Command-line values arrive as strings: bind integers and floats as numbers."""
    if not isinstance(value, str):
        return value
    if re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    try:
        return float(value)
    except ValueError:
        return value


def bind_params(store: Store, query: NamedQuery, given: dict[str, object]) -> dict[str, object]:
    """Check and complete parameters: unknown names are refused, optional ones default to NULL,
    and ``encoder_id`` accepts an encoder's name or defaults to the store's only encoder."""
    declared = {p.name: p for p in query.params}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise StoreError(
            f"query {query.name!r} has no parameter {unknown[0]!r}; its parameters: {', '.join(declared) or 'none'}"
        )
    bound: dict[str, object] = {}
    for name, param in declared.items():
        value = given.get(name)
        if name == "encoder_id" and (value is not None or not param.optional):
            value = store.resolve_encoder(value).encoder_id
        if value is None and not param.optional:
            raise StoreError(f"query {query.name!r} needs -p {name} VALUE ({param.help})")
        bound[name] = coerce_value(value)
    return bound


def run_query(store: Store, name: str, **params: object) -> pl.DataFrame:
    """Run the named query ``name`` with keyword parameters; returns a polars DataFrame."""
    query = get_query(name)
    return store.sql(query.sql, bind_params(store, query, params))
