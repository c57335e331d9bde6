"""What the command families share: the error decorator, the options several commands declare
(`--format`, `--measure`, `--encoder`, the encoding options), and `default_of`, which reads an
option's default from the library function or config dataclass it is passed to, so that a
default is written once, in the library."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging

import click
import duckdb

from saeembed.api.defaults import MEASURE_NAMES, measure_help
from saeembed.cli.render import FORMATS
from saeembed.errors import SaeembedError


def quiet() -> bool:
    """Whether the command runs under ``saeembed -q``: nothing but errors on stderr."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and (ctx.find_root().obj or {}).get("quiet"))


def note(message: str) -> None:
    """A line for the user on stderr (what was done, where it went, a warning), unless -q."""
    if not quiet():
        click.echo(message, err=True)


def default_of(target, name: str):
    """The default of parameter ``name`` of function ``target``, or of field ``name`` of the
    dataclass ``target``."""
    if dataclasses.is_dataclass(target):
        field = {f.name: f for f in dataclasses.fields(target)}[name]
        if field.default_factory is not dataclasses.MISSING:
            return field.default_factory()
        return field.default
    default = inspect.signature(target).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{target.__qualname__}({name}) has no default")
    return default


def domain_errors(fn):
    """Turn saeembed's domain errors into one-line click errors (exit code 1)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SaeembedError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:  # disk full, permission denied, a path that vanished
            where = f" {exc.filename}" if exc.filename else ""
            raise click.ClickException(
                f"cannot write or read{where}: {exc.strerror or exc}; check free space and "
                "permissions"
            ) from exc
        except duckdb.Error as exc:  # a full disk ends a write as an IO or a commit error
            raise click.ClickException(_duckdb_line(exc)) from exc

    return wrapper


_SYSTEM = ("no space left", "permission denied", "read-only file system", "disk quota",
           "could not write", "could not read", "i/o error", "input/output error")  # fmt: skip


def _duckdb_line(exc: duckdb.Error) -> str:
    """One line for a DuckDB error that reached the command: the operating system's cause and
    its fix when it is one (a full disk, a denied permission), else the error as DuckDB gave it
    (the full traceback is logged with -vv)."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    logging.getLogger("saeembed").debug("DuckDB error", exc_info=exc)
    lowered = message.lower()
    if isinstance(exc, duckdb.IOException) or any(s in lowered for s in _SYSTEM):
        full = "no space left" in lowered or "disk quota" in lowered
        fix = (
            "free some space (or write elsewhere) and rerun; what was committed before is kept"
            if full
            else "check free space and permissions of its folder"
        )
        return f"the store could not be read or written ({message}); {fix}"
    return f"DuckDB failed: {message} (rerun with -vv for the details)"


def measure_option(default: str | None, what: str = "concept", default_note: str = ""):
    """``--measure``: what each (document, concept) contributes (saeembed.analysis.measures);
    ``default`` None leaves the choice to the library, described by ``default_note``."""
    return click.option(
        "--measure",
        type=click.Choice(MEASURE_NAMES),
        default=default,
        show_default=default is not None,
        help=measure_help(what) + (f" [default: {default_note}]" if default_note else ""),
    )


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Output format [default: table on a terminal, jsonl when piped].",
)


def encoder_option(help: str = "Encoder id or name [default: the store's only encoder]."):
    """``--encoder``: which of the store's encoders (id or name)."""
    return click.option("--encoder", help=help)


def options(*decorators):
    """Apply several option decorators as one (in the order given, top to bottom in --help)."""

    def apply(fn):
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


# ---- encoding: reader, SAE, layer, truncation, batching, device, chat wrapping -----------------

_ENCODING_FLAGS = {"chat": "--as-chat"}  # the option's name where it is not --field-name
_ENCODING_TYPES = {"layer": int, "max_tokens": click.IntRange(1), "batch_tokens": click.IntRange(1)}


def encoding_options(
    *,
    only: tuple[str, ...] | None = None,
    defaults: dict | None = None,
    help: dict | None = None,
    chat_choices: tuple[str, ...] | None = None,
):
    """The options of `saeembed.encoding.options.EncodingOptions` (all of them, or ``only``
    these), with the defaults and help it holds (``defaults`` and ``help`` change them for one
    command). The command receives them as one argument, ``encoding``: an `EncodingOptions`,
    checked."""
    from saeembed.api.defaults import CHAT_TURNS, EncodingOptions

    names = only or EncodingOptions.names()
    base = EncodingOptions()
    decorators = []
    for name in names:
        flag = _ENCODING_FLAGS.get(name, "--" + name.replace("_", "-"))
        default = (defaults or {}).get(name, getattr(base, name))
        kind = _ENCODING_TYPES.get(name)
        if name == "chat":
            kind = click.Choice(list(chat_choices or CHAT_TURNS))
        decorators.append(click.option(
            flag, name, type=kind, default=default, show_default=default is not None,
            help=(help or {}).get(name, EncodingOptions.help(name)),
        ))  # fmt: skip

    def wrap(fn):
        @functools.wraps(fn)
        def with_options(*args, **kwargs):
            given = {name: kwargs.pop(name) for name in names}
            return fn(*args, encoding=EncodingOptions(**given).check(), **kwargs)

        return options(*decorators)(domain_errors(with_options))  # a bad value: one line

    return wrap


# ---- analysis settings: one option per field of a settings dataclass ---------------------------


def settings_options(cls, *, argument: str = "settings", only: tuple[str, ...] | None = None,
                     defaults: dict | None = None, help: dict | None = None):  # fmt: skip
    """One option per field of the settings dataclass ``cls`` (`saeembed.api.DiffSettings`;
    ``only`` these fields), with the default, allowed values, smallest value, flag and help the
    field holds (`saeembed.analysis.settings.setting`; ``defaults`` and ``help`` change them for
    one command; a bool is a flag, a ``many`` field a repeatable option of comma-separated
    values). The command receives them as one argument, ``argument``: a ``cls``, checked."""
    from saeembed.api.defaults import flag_of

    chosen = [f for f in dataclasses.fields(cls) if only is None or f.name in only]
    decorators = []
    for f in chosen:
        text = (help or {}).get(f.name, f.metadata["help"])
        if f.metadata.get("many"):
            decorators.append(click.option(flag_of(f), f.name, multiple=True, help=text))
            continue
        default = (defaults or {}).get(f.name, f.default)
        kind = _click_type(f, default)
        if kind is bool:
            decorators.append(click.option(flag_of(f), f.name, is_flag=True, help=text))
            continue
        decorators.append(click.option(
            flag_of(f), f.name, type=kind, default=default,
            show_default=default is not None and default != (), help=text,
        ))  # fmt: skip

    def wrap(fn):
        @functools.wraps(fn)
        def with_settings(*args, **kwargs):
            given = {f.name: _parsed(f, kwargs.pop(f.name)) for f in chosen}
            return fn(*args, **{argument: cls(**given).check()}, **kwargs)

        return options(*decorators)(domain_errors(with_settings))  # a bad value: one line

    return wrap


def _parsed(f: dataclasses.Field, value):
    """A repeatable option's values as the field's tuple: feature ids or document references,
    each given repeated or comma-separated."""
    many = f.metadata.get("many")
    if not many:
        return value
    if many == "refs":
        return tuple(_parts(value))
    from saeembed.api.defaults import flag_of

    return tuple(feature_ids(value, flag_of(f)))


def _parts(values) -> list[str]:
    return [part.strip() for item in values for part in item.split(",") if part.strip()]


def feature_ids(values, option: str = "--features") -> list[int]:
    """Feature ids given with a repeatable ``option``, each maybe comma-separated."""
    parts = _parts(values)
    for part in parts:
        if not part.lstrip("-").isdigit():
            raise click.BadParameter(f"{part!r} is not a feature id", param_hint=option)
    return [int(part) for part in parts]


def _click_type(f: dataclasses.Field, default):
    """The click type of a settings field: its choices, a range from its ``min``, or the type of
    its default (str when it has none)."""
    if f.metadata.get("choices"):
        return click.Choice(list(f.metadata["choices"]))
    value = default if default is not None else f.default
    low = f.metadata.get("min")
    if isinstance(value, bool):
        return bool
    if isinstance(value, int) or (value is None and isinstance(low, int)):
        return click.IntRange(min=low) if low is not None else int
    if isinstance(value, float):
        return click.FloatRange(min=low) if low is not None else float
    return str
