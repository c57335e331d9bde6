"""Sharded stores (docs/scale.md): an encoding written as Parquet shards plus a manifest, by one
process or by Ray actors, and read by every analysis through DuckDB views.

- `layout`: the directory contract (paths, header, manifest, checks)
- `views`: a shard directory opened as a store
- `worker`: one shard encoded by the shared encoding core
- `encode`: the driver (checks, shard plan, commit)
- `ray_engine`: the shards on a Ray actor pool
- `imports`: shards loaded into a single-file store
"""
