"""The ``--where`` filter over documents, shared by `search` and `diff`: an SQL condition in which
``feature:123`` stands for that concept's activation in the document (0 when absent) and
``meta.KEY`` for a metadata field as text (cast it for numbers: ``CAST(meta.year AS INTEGER) >=
2015``). It is SQL from a user, so it runs only on a store opened read-only, whose connection is
then restricted to the store (`Store.restrict_sql`), as one SELECT statement."""

from __future__ import annotations

import re

import polars as pl

from saeembed.errors import InputError, StoreError
from saeembed.store import Encoder, Store
from saeembed.store.user_sql import check_statements

_FEATURE = re.compile(r"\bfeature:(\d+)\b")
_META = re.compile(r"\bmeta\.([A-Za-z_][A-Za-z0-9_]*)\b")
# SQL string literals and quoted names
_QUOTED = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")")


def where_sql(expression: str, encoder: Encoder) -> str:
    """The SQL condition (over documents ``d``) a ``--where`` expression stands for; quoted text
    (``'feature:1'``, ``"meta.x"``) is left as it is."""
    parts = _QUOTED.split(expression)  # odd positions are the quoted pieces
    return "".join(part if i % 2 else _rewrite(part, encoder) for i, part in enumerate(parts))


def _rewrite(sql: str, encoder: Encoder) -> str:
    for number in _FEATURE.findall(sql):
        if int(number) >= encoder.d_sae:
            raise InputError(
                f"feature:{number} does not exist (encoder has {encoder.d_sae} features)"
            )
    sql = _FEATURE.sub(
        lambda m: (
            "coalesce((SELECT max(x.value) FROM activations x WHERE x.encoder_id = "
            f"{encoder.encoder_id} AND x.doc_id = d.doc_id AND x.feature = {int(m.group(1))}), 0)"
        ),
        sql,
    )
    return _META.sub(lambda m: f"(d.meta->>'{m.group(1)}')", sql)


def filtered(store: Store, query: str, params: dict, where: str | None) -> pl.DataFrame:
    """Run ``query`` (one SELECT whose condition holds the filter, from `where_sql`); with a
    ``where``, only on a read-only store, restricted from then on. An unusable filter is an
    `InputError` saying how to write one."""
    if where and not store.read_only:
        raise StoreError(
            "a --where filter runs only on a read-only store (`saeembed.store.user_sql`); "
            "encode first, then filter on the store opened read-only"
        )
    try:
        if where:
            store.restrict_sql()
            check_statements(query)  # one SELECT: the filter cannot end it and start another
        return store.sql(query, params)
    except StoreError as exc:
        raise InputError(f"cannot use --where {where!r} ({exc}); write it as SQL, e.g. "
                         "\"feature:12 > 0 AND meta.party = 'D'\"") from exc  # fmt: skip
