"""How an encoding is written as shards (`saeembed encode --out DIR`): `ShardOptions` holds the
engine (this process or Ray actors), the Ray cluster's address, the actors and their GPUs, and
the documents per shard, each with its default and help (`saeembed.cli.options.settings_options`
makes the command's options from it). Light: no Ray, torch or DuckDB here."""

from __future__ import annotations

from dataclasses import dataclass

from saeembed.analysis.settings import check_fields, setting
from saeembed.errors import InputError

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class ShardOptions:
    """The options of a sharded encoding; `check` refuses bad values and combinations."""

    engine: str | None = setting(
        None,
        "With --out: encode in this process, or on Ray actors [default: local].",
        choices=ENGINES,
    )
    address: str | None = setting(
        None, "With --engine ray: a running cluster [default: start a local one]."
    )
    workers: int | None = setting(None, "With --engine ray: actors [default: CPUs / 2].", min=1)
    gpus_per_worker: float = setting(
        0.0, "With --engine ray: GPUs per actor (0: CPU actors).", min=0.0
    )
    shard_docs: int | None = setting(
        None,
        "With --out: documents per shard [default: 8,192; multiples of 2,048 give values "
        "bit-identical to a --db encode].",
        min=1,
    )

    def check(self) -> ShardOptions:
        """Itself, or an `InputError` naming the bad value and the fix."""
        check_fields(self)
        return self

    def check_engine(self) -> ShardOptions:
        """Itself, or an `InputError` for Ray's options without the Ray engine (checked where
        shards are written: elsewhere, any of them means --out is missing)."""
        on_ray = self.address is not None or self.workers is not None or self.gpus_per_worker
        if on_ray and self.engine != "ray":
            raise InputError("--address, --workers and --gpus-per-worker run Ray actors; "
                             "add --engine ray")  # fmt: skip
        return self

    @property
    def given(self) -> bool:
        """Whether any option differs from the defaults (they only mean something with
        shards)."""
        return self != ShardOptions()
