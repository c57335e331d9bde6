"""How result tables look on a terminal and in CSV: the diff's compact view (one column per side
named after it, the difference with its interval, q; examples one per line under the label)
and the themes' view. JSON keeps every column; `saeembed.cli.render` fits the table to the width."""

from __future__ import annotations

import polars as pl

from saeembed.api.defaults import excerpt, folded_view
from saeembed.cli.render import join_lists, scientific

SIDE_NAME_WIDTH = 16
EXAMPLE_CHARS = 150
THEME_EXAMPLE_CHARS = 72


def side_names(a: str, b: list[str]) -> tuple[str, str]:
    """Column headers for the two sides: their names, cut to `SIDE_NAME_WIDTH`; several B's
    pooled are "rest" (one against the rest), and equal names are told apart."""
    first = _short(a)
    second = _short(b[0]) if len(b) == 1 else "rest"
    if second == first:
        first, second = f"A: {first}", f"B: {second}"
    return first, second


def _short(name: str) -> str:
    return name if len(name) <= SIDE_NAME_WIDTH else name[: SIDE_NAME_WIDTH - 1] + "…"


def diff_view(result, fmt: str) -> pl.DataFrame:
    """The diff table as ``fmt`` shows it. Table: concepts alike to one above are folded into
    its row; per side "documents (share)" (or the mean, for a numeric measure) under the side's
    name; ``diff (95% CI)``; q; the examples one per line under the label. CSV: every column,
    lists joined. JSON: as is."""
    table = result.table
    if fmt == "csv":
        return join_lists(table, {"examples": " | "})
    if fmt != "table":
        return table
    table = folded_view(table)
    name_a, name_b = side_names(result.a, result.b)
    label = pl.col("label").fill_null("(unlabelled)")
    if "examples" in table.columns:
        shown = pl.col("examples").list.eval(
            pl.lit("› ") + pl.element().str.slice(0, EXAMPLE_CHARS).str.replace_all("\n", " ")
        )
        label = pl.concat_str([label, shown.list.join("\n")], separator="\n", ignore_nulls=True)
    if "freq_a" in table.columns:
        side = [_count_share(f"n_{s}", pl.col(f"freq_{s}")) for s in "ab"]
        digits = 2
    elif "mean_a" not in table.columns:  # paired, binary: pairs whose A (B) side has it
        side = [_count_share(f"n_{s}", pl.col(f"n_{s}") / pl.col("n_pairs")) for s in "ab"]
        digits = 2
    else:
        side = [pl.col(f"mean_{s}").map_elements(_number, return_dtype=pl.String) for s in "ab"]
        digits = None
    difference = pl.struct("diff", "ci_low", "ci_high").map_elements(
        lambda r: _interval(r["diff"], r["ci_low"], r["ci_high"], digits), return_dtype=pl.String
    )
    view = table.select(
        "feature",
        label.alias("label"),
        side[0].alias(name_a),
        side[1].alias(name_b),
        difference.alias("diff (95% CI)"),
        "q",
    )
    return scientific(view, "q")


def _count_share(count: str, share: pl.Expr) -> pl.Expr:
    return pl.format("{} ({}%)", pl.col(count), (share * 100).round(1))


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def _interval(estimate, low, high, digits: int | None) -> str:
    if estimate is None:
        return ""
    form = (lambda v: f"{v:+.{digits}f}") if digits is not None else (lambda v: f"{v:+.3g}")
    if low is None or high is None:
        return form(estimate)
    return f"{form(estimate)} ({form(low)}, {form(high)})"


def theme_view(result, fmt: str) -> pl.DataFrame:
    """The themes table as ``fmt`` shows it. Table (as the concept diff's): the name, under it
    how the theme holds its documents (alike ones, or a rule over concepts found together) and
    one example per side; per side "documents tested (share)" under the side's name (from
    ``result``, a `saeembed.api.DiffResult`); ``diff (95% CI)``; q. CSV: every column, lists
    joined. JSON: as is."""
    table = result.table
    if fmt not in ("table", "csv"):
        return table
    if fmt == "csv":
        concepts = pl.col("concepts").list.eval(
            pl.concat_str([pl.lit("#"), pl.element().struct.field("feature").cast(pl.String),
                           pl.lit(" "), pl.element().struct.field("label").fill_null("")])
        ).list.join(" · ")  # fmt: skip
        examples = pl.col("examples").list.eval(
            pl.concat_str([pl.element().struct.field("side"), pl.lit(": "),
                           pl.element().struct.field("text")])
        ).list.join(" | ")  # fmt: skip
        return table.with_columns(
            concepts, examples, pl.col("doc_ids").cast(pl.List(pl.String)).list.join(" ")
        )
    name_a, name_b = side_names(result.a, result.b)
    found = {"A": name_a, "B": name_b}
    # how a theme holds its documents, in words: alike ones, or a rule over concepts found together
    kind = (
        pl.when(pl.col("kind") == "concepts").then(pl.col("rule"))
        .when(pl.col("kind") == "rest").then(pl.lit("documents the sides share"))
        .otherwise(pl.lit("alike documents"))
    )  # fmt: skip
    where = pl.col("found_in").replace_strict(found, default=None, return_dtype=pl.String)
    how = pl.concat_str([kind, pl.lit(", found in "), where], ignore_nulls=False)
    shown = pl.col("examples").list.eval(
        pl.concat_str([pl.lit("› "), pl.element().struct.field("side")
                       .replace_strict(found, default="", return_dtype=pl.String), pl.lit(": "),
                       pl.element().struct.field("text")
                       .map_elements(lambda t: excerpt(t, THEME_EXAMPLE_CHARS),
                                     return_dtype=pl.String)])
    ).list.gather_every(2).list.join("\n")  # fmt: skip
    name = pl.concat_str([pl.col("name"), pl.coalesce(how, kind), shown], separator="\n",
                         ignore_nulls=True)  # fmt: skip
    side = [_count_share(f"n_{s}", pl.col(f"share_{s}")) for s in "ab"]
    difference = pl.struct("diff", "ci_low", "ci_high").map_elements(
        lambda r: _interval(r["diff"], r["ci_low"], r["ci_high"], 2), return_dtype=pl.String
    )
    view = table.select(
        pl.col("theme").alias("#"),
        name.alias("theme"),
        side[0].alias(name_a),
        side[1].alias(name_b),
        difference.alias("diff (95% CI)"),
        "q",
    )
    # the documents the sides share are shown, not tested
    return scientific(view, "q").with_columns(pl.col("q").fill_null("not tested"))
