"""What a diff compares and how, in one place: `DiffSettings` holds the measure, the test, the
ordering, pairing, the support floor, the threshold, alpha, themes and the ``--where`` filter,
and what the result shows (rows, examples, report panels), each with its default, its allowed
values and the help the command line shows (`saeembed.cli.options.settings_options` makes the
options from it). `check` refuses a bad combination once, before anything is encoded. Light:
no torch here."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from saeembed.analysis.measures import (
    DEFAULT_DIFF_MEASURE,
    DIFF_SORTS,
    MEASURE_NAMES,
    TEST_NAMES,
    check_test,
    get_measure,
    measure_help,
)
from saeembed.analysis.settings import DEFAULT_PANELS, check_fields, setting
from saeembed.errors import InputError

BY = ("concepts", "themes")
PAIR_ON = ("row", "id")


@dataclass(frozen=True)
class DiffSettings:
    """The settings of one diff (`saeembed.diff`); `check` refuses bad values and combinations."""

    measure: str = setting(
        DEFAULT_DIFF_MEASURE,
        measure_help(),
        choices=MEASURE_NAMES,
    )
    test: str | None = setting(
        None,
        "Test for the measure [default: proportion for binary measures, welch for numeric].",
        choices=TEST_NAMES,
    )
    sort: str = setting(
        DIFF_SORTS[0],
        "Order of the concepts that differ (q < --alpha; the rest follow by p): specific (the "
        "conservative ratio of the sides' frequencies or means: concepts particular to one "
        "side), p, effect (absolute diff) or logodds (the conservative log odds ratio; presence "
        "and strong only). See docs/diff.md#order-of-the-rows.",
        choices=DIFF_SORTS,
    )
    paired: bool = setting(False, "Rows of A and B correspond (McNemar's or the paired t-test).")
    pair_on: str = setting(
        "row",
        "Pair documents by row number in their files or by their ids (--id-col at encode).",
        choices=PAIR_ON,
    )
    min_support: int = setting(
        10, "Test only concepts in at least this many documents of A and B together.", min=0
    )
    threshold: float = setting(
        0.0, "A document has a concept when its pooled activation exceeds this.", min=0.0
    )
    alpha: float = setting(0.05, "q-value cut-off.")
    by: str = setting(
        "concepts",
        "What to compare: each concept, or themes (kinds of documents: regions of alike "
        "documents, and documents carrying several concepts found together; found on a random "
        "half of each side and tested on the other; docs/diff.md#themes).",
        choices=BY,
    )
    themes: int = setting(
        12,
        "Most regions of alike documents (--by themes, and the report's themes section); themes "
        "of concepts found together add at most a quarter as many.",
        min=2,
    )
    seed: int = setting(0, "Seed of the themes' split and fit.")
    where: str | None = setting(
        None,
        "Compare only the documents of each side passing this SQL filter: feature:123 > 0, "
        "meta.KEY = 'value', AND/OR/NOT (docs/diff.md, Subsets).",
    )
    top: int | None = setting(
        None, "Rows shown (the first of the ranking; in Python, None shows all).", min=1
    )
    examples: int = setting(
        0, "Top documents per row (on a terminal, one per line under the label).", min=0
    )
    panels: int = setting(DEFAULT_PANELS, "Concepts shown up close in the --html report.", min=0)

    def check(self) -> DiffSettings:
        """Itself, or an `InputError` naming the bad value (or pair of values) and the fix."""
        from saeembed.analysis.diff import check_diff_options, check_sort

        check_fields(self)
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
