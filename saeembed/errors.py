"""Domain exceptions. Every user-facing failure is a `SaeembedError` whose message is one line
that names the problem and the fix; the CLI turns them into `click.ClickException` at the edge."""


class SaeembedError(Exception):
    """Base class for errors caused by input or configuration (not bugs)."""


class InputError(SaeembedError):
    """An input file or its content cannot be used (missing, empty, bad encoding, bad column)."""


class SAEError(SaeembedError):
    """An SAE cannot be found, read, or used with the chosen model and layer."""


class ModelError(SaeembedError):
    """A reader model cannot be found or loaded."""


class StoreError(SaeembedError):
    """The DuckDB store is missing, written by a newer version, or asked for something it lacks."""
