"""The DuckDB store: schema migrations and the `Store` class."""

from saeembed.store.migrations import latest_version
from saeembed.store.store import Encoder, Store

__all__ = ["Encoder", "Store", "latest_version"]
