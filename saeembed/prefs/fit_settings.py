"""How a preference fit runs (`saeembed.preferences.fit`, `saeembed prefs fit`), in one place:
`FitSettings` holds the measure, the controls, the relabelling, the prevalence floor, alpha, the
sparse model sizes, the dense baseline, the seed and what the result shows, each with its
default, allowed values and help; `check` refuses a bad value once, before any work. Light: no
scikit-learn here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from saeembed.analysis.measures import MEASURE_NAMES
from saeembed.analysis.settings import DEFAULT_PANELS, check_fields, setting
from saeembed.errors import InputError

#: What every regression controls for by default: the responses' length difference.
CONTROLS = ("length",)
#: The sizes of the sparse k-concept models.
SPARSE_KS = (5, 10, 20)


@dataclass(frozen=True)
class FitSettings:
    """The settings of one preference fit; `check` refuses bad values."""

    measure: str | None = setting(
        None,
        "Per-response concept measure [default: share for a document encoder, presence for a "
        "pair encoder].",
        choices=MEASURE_NAMES,
    )
    controls: tuple[str, ...] = setting(
        CONTROLS, "Control every regression for the length difference (characters), or nothing."
    )
    relabel: str | None = setting(
        None, "Use this relabelling's labels (from `prefs apply`) instead of the original."
    )
    min_prevalence: float = setting(
        0.01,
        "Test concepts that differ between the responses in at least this share of pairs.",
        min=0.0,
    )
    alpha: float = setting(0.05, "q-value cut-off.")
    ks: tuple[int, ...] = setting(SPARSE_KS, "Sizes of the sparse concept models.")
    dense: bool = setting(True, "Fit the dense MiniLM baseline.")
    examples: int = setting(0, "Example pairs per row.", min=0)
    top: int | None = setting(None, "Rows kept (the first of the ranking; None: all).", min=1)
    seed: int = setting(0, "Cross-validation folds.")
    panels: int = setting(DEFAULT_PANELS, "Concepts shown with example pairs in a report.", min=0)

    def __post_init__(self):  # lists are accepted and kept as tuples
        object.__setattr__(self, "controls", tuple(self.controls))
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))

    def check(self) -> FitSettings:
        """Itself, or an `InputError` naming the bad value and the fix."""
        check_fields(self)
        if not 0.0 < self.alpha < 1.0:
            raise InputError(f"--alpha must be between 0 and 1 (got {self.alpha}); e.g. 0.05")
        if self.min_prevalence > 1:
            raise InputError(f"--min-prevalence is a share of pairs, at most 1 "
                             f"(got {self.min_prevalence})")  # fmt: skip
        unknown = [c for c in self.controls if c not in CONTROLS]
        if unknown:
            raise InputError(f"unknown control {unknown[0]!r}; use length, or none at all")
        if not self.ks or any(k < 1 for k in self.ks):
            raise InputError(f"--k needs sizes of at least 1, like 5,10,20 (got {self.ks})")
        return self

    def but(self, **changes) -> FitSettings:
        """A copy with ``changes``, checked."""
        return replace(self, **changes).check()

    def fit_kwargs(self) -> dict:
        """The arguments of `saeembed.prefs.fit.fit_preferences` (all but ``panels``)."""
        values = asdict(self)
        values.pop("panels")
        return values
