"""The diff report (`saeembed diff ... --html`): a header with the sides and the test settings, a
forest plot of the top concepts, the whole table of tested concepts (sortable, filterable), and a
panel per top concept: its label, the histogram of its activation on each side, top and quantile
examples with token shading, co-occurring concepts and the commands that reproduce it.

`build_diff_report` reads what the panels need from the store; `DiffReport` holds the table and
the page, writes it (`write_html`) and shows it in Jupyter (`_repr_html_`)."""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from saeembed.analysis.weak import weak_diff
from saeembed.labels.alike import folded_groups
from saeembed.labels.table import label_names
from saeembed.reports import concept_data, page
from saeembed.reports.page import DEFAULT_PANELS
from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)
TOP_EXAMPLES = 3
FOREST_ROWS = 30


@dataclass
class DiffReport:
    """A diff table with what its report page shows; ``payload`` is the page's data."""

    table: pl.DataFrame
    payload: dict
    title: str = "saeembed diff"
    _html: str | None = field(default=None, repr=False)

    def html(self) -> str:
        if self._html is None:
            self._html = page.render(self.title, self.payload)
        return self._html

    def write_html(self, path: str | Path) -> Path:
        """Write the report page to ``path`` (atomically); returns the path."""
        return page.write_text(path, self.html())

    def _repr_html_(self) -> str:
        return page.iframe(self.html())


def table_columns(table: pl.DataFrame) -> dict:
    """The table as columns of plain values (numbers kept to 4 significant digits)."""
    out = {}
    for name in table.columns:
        series = table[name]
        if series.dtype.is_float():
            out[name] = [None if v is None else float(f"{v:.4g}") for v in series.to_list()]
        elif series.dtype.is_integer() or series.dtype in (pl.String, pl.Boolean):
            out[name] = series.to_list()
    return out


def report_labels(store: Store, encoder: Encoder) -> tuple[dict, dict]:
    """Each feature's label, and its (label source, label score)."""
    names = label_names(store, encoder)
    labels = dict(zip(names["feature"].to_list(), names["label"].to_list(), strict=True))
    meta = store.sql(
        "SELECT feature, label_source, label_score, shipped_label, "
        "local_evidence::VARCHAR AS local_evidence FROM features WHERE encoder_id = $enc",
        {"enc": encoder.encoder_id},
    )
    sources = {r[0]: r[1:] for r in meta.iter_rows()}
    return labels, sources


def label_fields(labels: dict, sources: dict, feature: int) -> dict:
    """The label keys of a feature's panel or page: its label, source and score, the name
    shipped with the SAE where the store's own replaced it, and what it fires on in this store
    (its local evidence, `saeembed.labels.local`: ``[term, peaks]`` pairs, at most 6)."""
    source, score, shipped, evidence = (*sources.get(feature, ()), None, None, None, None)[:4]
    terms = [[e["term"], e["n"]] for e in json.loads(evidence)[:6]] if evidence else []
    return {
        "feature": int(feature),
        "label": labels.get(feature),
        "label_source": source,
        "label_score": score,
        "shipped_label": shipped if source == "local" else None,
        "evidence": terms,
    }


def diff_command(settings: dict, html_path: str = "report.html") -> str:
    """The `saeembed diff` command line that makes this report."""
    words = ["saeembed", "diff", settings["a"], *settings["b"]]
    if settings.get("db"):
        words += ["--db", str(settings["db"])]
    words += ["--measure", settings["measure"], "--sort", settings["sort"]]
    if settings.get("paired"):
        words += ["--paired", "--pair-on", settings.get("pair_on", "row")]
    elif settings.get("test"):
        words += ["--test", settings["test"]]
    for option in ("min_support", "alpha", "threshold", "where"):
        if settings.get(option) is not None:
            words += [f"--{option.replace('_', '-')}", str(settings[option])]
    words += ["--html", html_path, "--panels", str(settings.get("panels", DEFAULT_PANELS))]
    return shlex.join(words)


def _show_command(db, feature: int) -> str:
    """The command that makes a concept's own page."""
    return shlex.join(["saeembed", "features", "show", str(db or "DB"), str(feature), "--html",
                       f"feature-{feature}.html"])  # fmt: skip


def build_diff_report(
    store: Store,
    encoder: Encoder,
    table: pl.DataFrame,
    *,
    corpora_a: list[str],
    corpora_b: list[str],
    settings: dict,
    panels: int = DEFAULT_PANELS,
    examples: int = TOP_EXAMPLES,
    scorer="auto",
    progress: bool = True,
    themes=None,
    sides=None,
) -> DiffReport:
    """The report of diff ``table`` (ranked, every tested concept) of ``corpora_a`` against
    ``corpora_b``. ``settings``: measure, test, sort, alpha, paired, db, min_support (as given to
    the diff). ``scorer``: a `TokenScorer`, None (peak spans only) or "auto" (load the encoder's
    reader and SAE when the store has them); ``themes``: the `saeembed.analysis.themes.Themes`
    shown above the concepts; ``sides``: the diff's `saeembed.analysis.diff.Sides` when read
    already."""
    from saeembed.reports.tokens import load_scorer

    if sides is None:
        from saeembed.analysis.sides import read_sides

        sides = read_sides(store, encoder, corpora_a, corpora_b)
    side_of = np.where(sides.is_a, 0, 1)
    scope = concept_data.scope_table(sides.doc_id, side_of)
    sizes = [sides.size_a, sides.size_b]
    labels, sources = report_labels(store, encoder)
    # concepts alike to one listed above them are counted on its row (saeembed.labels.alike)
    leaders, alike = folded_groups(table)
    chosen = [int(table["feature"][i]) for i in leaders[:panels]]
    rows = concept_data.activation_rows(store, encoder, chosen, scope)
    cooc = concept_data.cooccurring(store, encoder, chosen, scope, labels)
    strong = concept_data.strong_thresholds(store, encoder, chosen)
    texts = concept_data.candidate_texts(store, rows, examples)
    if scorer == "auto":
        scorer = load_scorer(encoder) if chosen else None
    builder = concept_data.ExampleBuilder(store, scorer, progress=progress)
    settings = {**settings, "a": " + ".join(corpora_a), "b": corpora_b, "panels": panels}
    db = settings.get("db")
    records = {r["feature"]: r for r in table.filter(pl.col("feature").is_in(chosen)).to_dicts()}
    details = []
    for feature in chosen:
        mine = rows.filter(pl.col("feature") == feature)
        values = [mine.filter(pl.col("side") == s)["value"].to_numpy() for s in (0, 1)]
        top, quantiles = concept_data.pick_examples(mine, 2, examples, texts)
        details.append(
            {
                **label_fields(labels, sources, feature),
                "alike": alike.get(int(feature), []),
                "row": {k: v for k, v in records[feature].items() if not isinstance(v, list)},
                "hist": concept_data.histogram(values, sizes, strong.get(int(feature))),
                "top": [[builder.add(feature, r) for r in side] for side in top],
                "quantiles": [
                    builder.add(feature, r, q=q, side=int(r["side"])) for q, r in quantiles
                ],
                "cooc": cooc.get(int(feature), []),
                "commands": [diff_command(settings), _show_command(db, feature)],
            }
        )
    shading = builder.finish()
    payload = {
        "kind": "diff",
        "meta": _diff_meta(table, settings, encoder, sizes, corpora_b, shading),
        "table": table_columns(table.select([c for c in table.columns if c != "examples"])),
        "forest": min(FOREST_ROWS, len(leaders)),
        "forest_rows": leaders[:FOREST_ROWS],
        "alike": {str(f): ids for f, ids in alike.items()},
        "panels": details,
    }
    if themes is not None:  # kinds of documents, above the concepts (saeembed.analysis.themes)
        payload["themes"] = themes_payload(themes)
    title = f"saeembed diff: {settings['a']} vs {' + '.join(corpora_b)}"
    return DiffReport(table, payload, title)


def _diff_meta(table, settings, encoder, sizes, corpora_b, shading) -> dict:
    """The report header's facts: the sides, the settings, the counts, the command."""
    alpha = settings.get("alpha", 0.05)
    sides = [settings["a"], " + ".join(corpora_b)]
    significant = int((table["q"] < alpha).sum()) if table.height else 0
    return {
        "sides": sides,
        "sizes": sizes,
        "encoder": encoder.name,
        "measure": settings.get("measure"),
        "test": settings.get("test")
        or (table["test"][0] if "test" in table.columns and table.height else None),
        "sort": settings.get("sort"),
        "alpha": alpha,
        "paired": bool(settings.get("paired")),
        "one_vs_rest": len(corpora_b) > 1,
        "where": settings.get("where"),
        "tested": table.height,
        "significant": significant,
        "weak": weak_diff(sides, sizes, significant, alpha),
        "shading": shading,
        "command": diff_command(settings),
    }


#: concepts a theme shows on the page (the rest are counted; JSON output lists all)
PAGE_CONCEPTS = 12


def themes_payload(themes) -> dict:
    """A `saeembed.analysis.themes.Themes` as the page shows it (members left out: they can be
    millions)."""
    rows = themes.table.drop("doc_ids").to_dicts()
    for r in rows:
        # a rule of hundreds of concepts shows its most specific ones and a count
        r["more_concepts"] = max(len(r["concepts"]) - PAGE_CONCEPTS, 0)
        r["concepts"] = r["concepts"][:PAGE_CONCEPTS]
        for key in ("share_a", "share_b", "diff", "ci_low", "ci_high", "p", "q"):
            r[key] = None if r[key] is None else float(f"{r[key]:.4g}")
    return {"method": themes.method, "rows": rows}


def build_themes_report(themes, corpus_a: str, corpora_b: list[str], encoder: Encoder,
                        alpha: float = 0.05, where: str | None = None) -> DiffReport:  # fmt: skip
    """The report of `saeembed diff --by themes`: the themes, their tests, concepts and
    examples (``where``: the filter the diff kept its documents by)."""
    sides = [corpus_a, " + ".join(corpora_b)]
    words = ["saeembed", "diff", corpus_a, *corpora_b, "--by", "themes", "--themes",
             str(themes.config.k), "--seed", str(themes.config.seed)]  # fmt: skip
    command = shlex.join(words + (["--where", where] if where is not None else []))
    payload = {
        "kind": "themes",
        "meta": {
            "sides": sides,
            "sizes": [int(themes.n_sides[0]), int(themes.n_sides[1])],
            "encoder": encoder.name,
            "alpha": alpha,
            "significant": int((themes.table["q"] < alpha).sum()),
            "weak": weak_diff(
                sides,
                list(themes.n_sides),
                int((themes.table["q"] < alpha).sum()),
                alpha,
                what="theme",
            ),  # fmt: skip
            "command": command,
            "where": where,
        },
        "themes": themes_payload(themes),
    }
    return DiffReport(themes.table, payload, f"saeembed diff themes: {sides[0]} vs {sides[1]}")
