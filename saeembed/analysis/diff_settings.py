"""What a diff compares and how, in one place: `DiffSettings` holds the measure, the test, the
ordering, pairing, the support floor, the threshold, alpha, themes and the ``--where`` filter,
and what the result shows (rows, examples, report panels), each with its default, its allowed
values and the help the command line shows (`saeembed.cli.options.settings_options` makes the
options from it). `check` refuses a bad combination once, before anything is encoded. Light:
no torch here."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from saeembed.analysis.measures import (
    DEFAULT_DIFF_MEASURE,
    DIFF_SORTS,
    MEASURE_NAMES,
    TEST_NAMES,
    check_test,
    get_measure,
)
from saeembed.errors import InputError

BY = ("concepts", "themes")
PAIR_ON = ("row", "id")
#: concepts shown up close in a diff or preference report (`saeembed.reports`)
DEFAULT_PANELS = 20


def _meta(help: str, **cli) -> dict:
    """A field's help and its command-line form: ``choices``, ``min`` (the smallest value)."""
    return {"help": help, **cli}


@dataclass(frozen=True)
class DiffSettings:
    """The settings of one diff (`saeembed.diff`); `check` refuses bad values and combinations."""

    measure: str = field(default=DEFAULT_DIFF_MEASURE, metadata=_meta(
        "Per-document concept measure: presence, strong presence (above half the concept's "
        "p99), token count, share of tokens, mean or max activation (docs/diff.md#measures).",
        choices=MEASURE_NAMES))  # fmt: skip
    test: str | None = field(default=None, metadata=_meta(
        "Test for the measure [default: proportion for binary measures, welch for numeric].",
        choices=TEST_NAMES))  # fmt: skip
    sort: str = field(default=DIFF_SORTS[0], metadata=_meta(
        "Order of the concepts that differ (q < --alpha; the rest follow by p): specific (the "
        "conservative ratio of the sides' frequencies or means: concepts particular to one "
        "side), p, effect (absolute diff) or logodds (the conservative log odds ratio; presence "
        "and strong only). See docs/diff.md#order-of-the-rows.", choices=DIFF_SORTS))  # fmt: skip
    paired: bool = field(default=False, metadata=_meta(
        "Rows of A and B correspond (McNemar's or the paired t-test)."))  # fmt: skip
    pair_on: str = field(default="row", metadata=_meta(
        "Pair documents by row number in their files or by their ids (--id-col at encode).",
        choices=PAIR_ON))  # fmt: skip
    min_support: int = field(default=10, metadata=_meta(
        "Test only concepts in at least this many documents of A and B together.",
        min=0))  # fmt: skip
    threshold: float = field(
        default=0.0,
        metadata=_meta(
            "A document has a concept when its pooled activation exceeds this.", min=0.0
        ),
    )
    alpha: float = field(default=0.05, metadata=_meta("q-value cut-off."))
    by: str = field(default="concepts", metadata=_meta(
        "What to compare: each concept, or themes (kinds of documents: regions of alike "
        "documents, and documents carrying several concepts found together; found on a random "
        "half of each side and tested on the other; docs/diff.md#themes).", choices=BY))  # fmt: skip
    themes: int = field(default=12, metadata=_meta(
        "Most regions of alike documents (--by themes, and the report's themes section); themes "
        "of concepts found together add at most a quarter as many.", min=2))  # fmt: skip
    seed: int = field(default=0, metadata=_meta("Seed of the themes' split and fit."))
    where: str | None = field(default=None, metadata=_meta(
        "Compare only the documents of each side passing this SQL filter: feature:123 > 0, "
        "meta.KEY = 'value', AND/OR/NOT (docs/diff.md, Subsets)."))  # fmt: skip
    top: int | None = field(default=None, metadata=_meta(
        "Rows shown (the first of the ranking; in Python, None shows all).", min=1))  # fmt: skip
    examples: int = field(
        default=0,
        metadata=_meta(
            "Top documents per row (on a terminal, one per line under the label).", min=0
        ),
    )
    panels: int = field(default=DEFAULT_PANELS, metadata=_meta(
        "Concepts shown up close in the --html report.", min=0))  # fmt: skip

    def check(self) -> DiffSettings:
        """Itself, or an `InputError` naming the bad value (or pair of values) and the fix."""
        from saeembed.analysis.diff import check_diff_options, check_sort

        for f in fields(self):
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise InputError(f"unknown --{_flag(f.name)} {value!r}; use one of "
                                 f"{', '.join(choices)}")  # fmt: skip
            low = f.metadata.get("min")
            if low is not None and value is not None and value < low:
                raise InputError(f"--{_flag(f.name)} must be >= {low} (got {value})")
        check_diff_options(self.alpha, self.threshold, self.min_support)
        measure = get_measure(self.measure)
        if self.paired and self.by == "themes":
            raise InputError("--by themes compares two samples; it does not take --paired")
        if self.paired and self.where is not None:
            raise InputError("--where keeps a subset of each side, which would break the pairs of "
                             "--paired; filter the corpora before encoding them instead")  # fmt: skip
        if self.where is not None and not self.where.strip():
            raise InputError("--where is empty; give a condition, e.g. \"meta.year = '2020'\"")
        test = "paired" if self.paired else check_test(measure, self.test)
        check_sort(self.sort, measure, test, paired=self.paired)
        if self.by == "themes":
            from saeembed.analysis.themes import ThemeConfig

            ThemeConfig(k=self.themes, seed=self.seed).check()
        return self

    def but(self, **changes) -> DiffSettings:
        """A copy with ``changes``, checked."""
        return replace(self, **changes).check()

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(f.name for f in fields(DiffSettings))


def _flag(name: str) -> str:
    return name.replace("_", "-")
