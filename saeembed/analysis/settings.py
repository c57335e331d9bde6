"""The form every settings dataclass shares (`DiffSettings`, `ClusterSettings`, `ConceptQuery`):
each field declared with `setting` holds its default, its help and its command-line form
(allowed values, smallest value, flag, a repeatable list) in its metadata, and `check_fields`
refuses a value outside them in one line. `saeembed.cli.options.settings_options` makes the
options from the same metadata, so a setting is declared once."""

from __future__ import annotations

from dataclasses import field, fields

from saeembed.errors import InputError

#: Concepts shown up close in a diff or preference report (`saeembed.reports`).
DEFAULT_PANELS = 20


def setting(default, help: str, *, choices=None, min=None, flag: str | None = None,
            many: str | None = None):  # fmt: skip
    """A settings field: ``default`` and ``help``; ``choices``: the allowed values; ``min``: the
    smallest; ``flag``: the option where it is not ``--field-name``; ``many``: a repeatable
    option of comma-separated feature ids (``"ids"``) or document references (``"refs"``)."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "min": min,
            "flag": flag, "many": many}  # fmt: skip
    return field(default=default, metadata=meta)


def flag_of(f) -> str:
    """The command-line option of settings field ``f``."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def check_fields(settings) -> None:
    """An `InputError` for the first field of ``settings`` outside its choices or below its
    smallest value."""
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is None:
            continue
        choices, low = f.metadata.get("choices"), f.metadata.get("min")
        if choices and value not in choices:
            raise InputError(
                f"unknown {flag_of(f)} {value!r}; use one of {', '.join(map(str, choices))}"
            )
        if low is not None and value < low:
            raise InputError(f"{flag_of(f)} must be >= {low} (got {value})")
