"""Which concepts an analysis uses (`saeembed.cluster`, `saeembed.search`): `ConceptQuery` holds
a phrase, feature ids, example documents and exclusions, each with its help and command-line
form (`saeembed.cli.options.settings_options`), and `choose` turns it into a
`saeembed.analysis.concepts.ConceptChoice` on a store."""

from __future__ import annotations

from dataclasses import dataclass, replace

from saeembed.analysis.settings import check_fields, setting
from saeembed.store import Encoder, Store


@dataclass(frozen=True)
class ConceptQuery:
    """The concepts to use: those matching ``phrase``, the ``features`` by id, those that set the
    ``positives`` (example documents, as ``CORPUS:ROW`` references or doc_ids) apart, less the
    ``exclude`` ids and those matching ``exclude_phrase``; at most ``n_concepts`` from the
    phrase and from the examples each. Empty: every concept."""

    phrase: str | None = setting(
        None, 'Use the concepts matching this phrase, e.g. "tone".', flag="--concepts"
    )
    exclude_phrase: str | None = setting(
        None, "Leave out concepts matching this phrase.", flag="--exclude-concepts"
    )
    features: tuple[int, ...] = setting(
        (), "Feature ids to use (comma-separated or repeated).", many="ids"
    )
    exclude: tuple[int, ...] = setting((), "Feature ids to leave out.", many="ids")
    positives: tuple[int | str, ...] = setting(
        (),
        "An example document that has the property, as results show it (fresh:12) or its "
        "doc_id (repeatable).",
        flag="--positive",
        many="refs",
    )
    n_concepts: int = setting(
        20, "At most this many concepts from the phrase (and from the examples).", min=1
    )

    def __post_init__(self):  # lists are accepted and kept as tuples (the query is hashable)
        for name in ("features", "exclude", "positives"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def check(self) -> ConceptQuery:
        """Itself, or an `InputError` naming the bad value."""
        check_fields(self)
        return self

    def but(self, **changes) -> ConceptQuery:
        """A copy with ``changes``, checked."""
        return replace(self, **changes).check()

    @property
    def chooses(self) -> bool:
        """Whether it names concepts to use (otherwise every concept, less the exclusions)."""
        return bool(self.phrase or self.features or self.positives)

    def choose(self, store: Store, encoder: Encoder, corpus: str | None = None):
        """The `ConceptChoice` on ``store`` (examples read in ``corpus``), or None for every
        concept; the positives must have been resolved to doc_ids (`resolved`)."""
        from saeembed.analysis.concepts import choose_concepts

        if not self.chooses:
            if self.exclude or self.exclude_phrase:
                return choose_concepts(store, encoder, features=list(range(encoder.d_sae)),
                                       exclude=self.exclude, exclude_phrase=self.exclude_phrase)  # fmt: skip
            return None
        return choose_concepts(
            store, encoder, phrase=self.phrase, features=self.features, exclude=self.exclude,
            exclude_phrase=self.exclude_phrase, positives=self.positives, corpus=corpus,
            top=self.n_concepts,
        )  # fmt: skip

    def resolved(self, store: Store) -> ConceptQuery:
        """The query with its positives as doc_ids (`saeembed.store.doc_refs`)."""
        from saeembed.store.doc_refs import resolve_docs

        return replace(self, positives=tuple(resolve_docs(store, self.positives)))
