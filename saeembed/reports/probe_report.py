"""The probe report (`saeembed probe DB --target COLUMN --html PAGE`): what in the text predicts a
column, and how well. A header with the target, its classes and the documents probed; each
probe's held-out score with its 95% interval against chance; the concept probe's curve over k
with the dense probes as reference lines; the hypotheses (the concepts the probe selected, tested
on the half that did not select them), those that hold marked and the contradicted greyed; and,
for the first hypotheses, the documents of the class each marks where it fires most, with the
concept shaded token by token (`concept_data.ExampleBuilder`), beside the documents of the other
classes where it fires too.

`probe_payload` is the page's data (numbers as the `ProbeResult` holds them);
`write_probe_report` writes the page."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from saeembed.files import check_output
from saeembed.reports import concept_data, page
from saeembed.reports.diff_report import label_fields, report_labels
from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)
#: hypotheses shown with example documents
PROBE_PANELS = 8
#: documents of the marked class per panel (for a number: the strongest documents)
MARKED_EXAMPLES = 3
#: documents of the other classes where the concept fires, per panel
OTHER_EXAMPLES = 2
#: a hypothesis holds where q is below this and its interval stays on its side of no effect
ALPHA = 0.05
TOP_ROWS = concept_data.TOP_CANDIDATES
DENSE_PREFIXES = ("reader (", "sentence embedder (")


def score_group(probe: str) -> str:
    """What a row of `ProbeResult.scores` is: ``concepts`` (the probe with k by inner CV),
    ``curve`` (one k), ``dense`` (a dense probe) or ``union`` (dense and concepts together)."""
    if probe.startswith("concepts, k="):
        return "curve"
    if probe.startswith("concepts"):
        return "concepts"
    if probe.startswith("union"):
        return "union"
    return "dense" if probe.startswith(DENSE_PREFIXES) else "other"


def verdicts(hypotheses: pl.DataFrame, categorical: bool) -> list[str]:
    """Per hypothesis: ``holds`` (q < `ALPHA` and its interval above no effect: an odds ratio of
    1, a coefficient of 0), ``contradicted`` (the held-out half points the other way: an odds
    ratio below 1, a negative coefficient) or ``open``."""
    if hypotheses.height == 0:
        return []
    effect, none = ("odds_ratio", 1.0) if categorical else ("coef", 0.0)
    out = []
    for row in hypotheses.select(effect, "low", "q").iter_rows():
        value, low, q = (None if v is None or v != v else v for v in row)
        if q is not None and q < ALPHA and low is not None and low > none:
            out.append("holds")
        elif value is not None and value < none:
            out.append("contradicted")
        else:
            out.append("open")
    return out


def _score_rows(scores: pl.DataFrame) -> list[dict]:
    rows = []
    for row in scores.to_dicts():
        group = score_group(row["probe"])
        k = int(row["probe"].split("=", 1)[1]) if group == "curve" else None
        rows.append({**row, "group": group, "k": k})
    return rows


def _meta(result, shading: str) -> dict:
    summary = dict(result.summary)
    meta = {**summary, "shading": shading, "alpha": ALPHA}
    if summary.get("kind") == "numeric" and result.predictions.height:
        values = result.predictions["target"].cast(pl.Float64)
        meta["target_range"] = [values.min(), values.median(), values.max()]
    return meta


def probe_payload(
    store: Store,
    encoder: Encoder,
    result,
    *,
    panels: int = PROBE_PANELS,
    examples: int = MARKED_EXAMPLES,
    scorer="auto",
    progress: bool = True,
) -> dict:
    """The page data of a `saeembed.analysis.probe.ProbeResult`: ``meta`` (its summary, how the
    examples are shaded), ``scores`` (its score rows, each with its ``group`` and, on the curve,
    its ``k``), ``hypotheses`` (its hypotheses as columns, with a ``verdict`` each) and
    ``panels`` (the first ``panels`` hypotheses with example documents). ``scorer``: a
    `TokenScorer`, None (stored peaks only) or "auto" (the encoder's reader and SAE where they
    load)."""
    hypotheses = result.hypotheses
    categorical = result.summary.get("kind") != "numeric"
    columns = hypotheses.to_dict(as_series=False)
    if hypotheses.height:
        columns["verdict"] = verdicts(hypotheses, categorical)
    details, shading = _panels(store, encoder, result, panels, examples, scorer, progress)
    return {
        "kind": "probe",
        "meta": _meta(result, shading),
        "scores": _score_rows(result.scores),
        "hypotheses": columns,
        "panels": details,
    }


def _sides(result) -> tuple[pl.DataFrame, list[str] | None]:
    """The probed documents, each with ``side``: its class's index (0 for a number), and the
    classes in that order (None for a number)."""
    frame = result.predictions.select("doc_id", "target")
    classes = list(result.summary.get("classes") or {}) or None
    if classes is None:
        return frame.with_columns(pl.lit(0, pl.Int32).alias("side")), None
    code = {name: i for i, name in enumerate(classes)}
    sides = [code.get(str(v), -1) for v in frame["target"].to_list()]
    return frame.with_columns(pl.Series("side", sides, dtype=pl.Int32)), classes


def _panels(store, encoder, result, panels, examples, scorer, progress) -> tuple[list, str]:
    """The panels of the first ``panels`` hypotheses, and how their examples are shaded."""
    from saeembed.reports.tokens import load_scorer

    hypotheses = result.hypotheses
    shown = hypotheses.head(max(panels, 0)).to_dicts() if hypotheses.height else []
    chosen = [int(r["feature"]) for r in shown]
    docs, classes = _sides(result)
    scope = concept_data.scope_table(docs["doc_id"].to_numpy(), docs["side"].to_numpy())
    rows = concept_data.activation_rows(store, encoder, chosen, scope)
    texts = concept_data.candidate_texts(store, rows, examples)
    target_of = dict(zip(docs["doc_id"].to_list(), docs["target"].to_list(), strict=True))
    labels, sources = report_labels(store, encoder) if chosen else ({}, {})
    if scorer == "auto":
        scorer = load_scorer(encoder) if chosen else None
    builder = concept_data.ExampleBuilder(store, scorer, progress=progress)
    verdict = verdicts(hypotheses, classes is not None)
    details = []
    for i, record in enumerate(shown):
        feature = int(record["feature"])
        mine = rows.filter(pl.col("feature") == feature)
        mark = classes.index(record["marks"]) if classes and record["marks"] in classes else 0
        # side 0: the class the concept marks (every document for a number); side 1: the rest
        mine = mine.with_columns((pl.col("side") != mark).cast(pl.Int32).alias("side"))
        counts = [int((mine["side"] == s).sum()) for s in (0, 1)]
        # the strongest of each side are all pick_examples may show at the top
        mine = mine.group_by("side", maintain_order=True).head(TOP_ROWS * examples)
        (marked, other), _ = concept_data.pick_examples(mine, 2, examples, texts)
        if classes is None:
            other = []
        details.append(
            {
                **label_fields(labels, sources, feature),
                "row": {k: v for k, v in record.items() if k != "examples"},
                "verdict": verdict[i],
                "marked": [builder.add(feature, r, y=target_of.get(r["doc_id"])) for r in marked],
                "other": [
                    builder.add(feature, r, y=target_of.get(r["doc_id"]))
                    for r in other[:OTHER_EXAMPLES]
                ],
                "n_marked": counts[0],
                "n_other": counts[1],
            }
        )
    shading = builder.finish()
    return details, shading


def write_probe_report(
    store: Store,
    encoder: Encoder,
    result,
    path: str | Path,
    *,
    panels: int = PROBE_PANELS,
    progress: bool = True,
    **options,
) -> Path:
    """Write the report of probe ``result`` (`saeembed.analysis.probe.run_probe` under
    ``encoder``) to ``path``, atomically; ``options`` go to `probe_payload`."""
    path = check_output(path)
    payload = probe_payload(store, encoder, result, panels=panels, progress=progress, **options)
    title = f"saeembed probe: {result.summary.get('target', '')}"
    return page.write_text(path, page.render(title, payload))
