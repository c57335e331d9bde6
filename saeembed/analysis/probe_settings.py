"""How a probe runs (`saeembed.probe`, `saeembed probe`), in one place: `ProbeSettings` holds
how the target column is read, the concept measure, the dense baselines, the folds, the
hypotheses shown and the seed, each with its default, allowed values and help; `check` refuses a
bad value once, before any work. Light: no scikit-learn here."""

from __future__ import annotations

from dataclasses import dataclass, replace

from saeembed.analysis.measures import MEASURE_NAMES
from saeembed.analysis.settings import check_fields, setting
from saeembed.errors import InputError

#: Which dense probes run beside the concept probe. auto: the reader's stored vectors where
#: every probed document has one (`encode --keep-dense`), and the sentence embedder.
DENSE_CHOICES = ("auto", "reader", "embedder", "both", "none")
TARGET_KINDS = ("auto", "categorical", "numeric")


@dataclass(frozen=True)
class ProbeSettings:
    """The settings of one probe; `check` refuses bad values."""

    kind: str = setting(
        "auto",
        "How to read the target: categorical (two or more classes) or numeric [default: "
        "numbers are numeric, dates numeric in days, anything else categorical].",
        choices=TARGET_KINDS,
    )
    measure: str = setting(
        "max", "Per-document concept value the probe reads.", choices=MEASURE_NAMES
    )
    dense: str = setting(
        "auto",
        "Dense baselines: reader (its stored mean-pooled activations at the SAE's site, from "
        "`encode --keep-dense`), embedder (the sentence embedder), both, none; auto: the "
        "reader's where stored, and the embedder.",
        choices=DENSE_CHOICES,
    )
    folds: int = setting(5, "Cross-fitting folds (each document scored by a model that never "
                         "saw it).", min=2)  # fmt: skip
    hypotheses: int = setting(
        20, "Most concepts shown as hypotheses (tested on the held-out half).", min=0
    )
    examples: int = setting(2, "Example documents per hypothesis.", min=0)
    max_docs: int | None = setting(
        None, "Probe at most this many documents (a sample fixed by document id).", min=20
    )
    seed: int = setting(0, "Folds, the discovery half and the bootstrap.")

    def check(self) -> ProbeSettings:
        """Itself, or an `InputError` naming the bad value and the fix."""
        check_fields(self)
        if self.folds > 20:
            raise InputError(f"--folds {self.folds} is more than needed; use 5 or 10")
        return self

    def but(self, **changes) -> ProbeSettings:
        """A copy with ``changes``, checked."""
        return replace(self, **changes).check()
