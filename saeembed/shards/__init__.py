"""Sharded stores (docs/scale.md): an encoding written as Parquet shards plus a manifest, by one
process or by Ray actors, and read by every analysis through DuckDB views.

- `layout`: the directory contract (paths, header, manifest, checks)
- `views`: a shard directory opened as a store
- `worker`: one shard encoded by the shared encoding core
- `create`: a new directory, created under a lock; a creation cut short is finished by a rerun
- `encode`: the driver (checks, shard plan, commit)
- `ray_engine`: the shards on a Ray actor pool
- `reaper`: ends a local Ray cluster's leftover processes once its driver is gone
- `imports`: shards loaded into a single-file store
"""
