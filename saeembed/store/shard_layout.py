"""The shard directory contract (docs/scale.md): where each file lives, the header that names the
one encoder of the directory, and the manifest that lists the completed shards.

A shard directory holds::

    saeembed-shards.json                       header: format, version, the encoder row
    manifest.jsonl                             one line per completed shard (the commit point)
    documents/corpus=NAME/shard-00000.parquet  the shard's documents
    encoded/corpus=NAME/shard-00000.parquet    encoded_documents rows of the shard's new documents
    activations/corpus=NAME/shard-00000.parquet  (doc_id, feature, value, ...) rows
    counts/corpus=NAME/shard-00000.parquet     (feature, n_docs): the shard's documents per
                                               concept (feature -1: documents counted)
    analysis.duckdb                            what analyses write (labels, clusterings, ...)

A shard's files are each written under a temporary name and renamed; the shard exists for
readers only once its manifest line is complete, so a kill at any moment leaves files that no
reader takes. Readers check the listed files' sizes and row counts against the manifest."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from saeembed.errors import StoreError

FORMAT = "saeembed-shards"
FORMAT_VERSION = 1
HEADER = "saeembed-shards.json"
MANIFEST = "manifest.jsonl"
ANALYSIS_DB = "analysis.duckdb"
TABLES = ("documents", "encoded", "activations", "counts")
_CORPUS_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_PARTITION = "corpus="  # a corpus's folder is corpus=NAME


@dataclass(frozen=True)
class ShardFile:
    """One Parquet file of a shard, as the manifest records it."""

    path: str  # relative to the shard directory, with forward slashes
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Shard:
    """One completed shard: documents ``[index * shard_docs, ...)`` of a corpus, and the
    encoding of those of them no earlier shard of the directory had encoded."""

    corpus: str
    index: int
    encoder: str  # the encoder's fingerprint
    files: dict[str, ShardFile]  # by table: documents, encoded, activations

    def to_json(self) -> str:
        return json.dumps(
            {
                "corpus": self.corpus,
                "index": self.index,
                "encoder": self.encoder,
                "files": {t: asdict(f) for t, f in self.files.items()},
            },
            sort_keys=True,
        )

    @staticmethod
    def from_json(line: str) -> Shard:
        raw = json.loads(line)
        files = {t: ShardFile(**f) for t, f in raw["files"].items()}
        return Shard(raw["corpus"], int(raw["index"]), raw["encoder"], files)


def is_shard_dir(path: str | Path) -> bool:
    return (Path(path) / HEADER).is_file()


def is_shard_target(db: str | Path) -> bool:
    """Whether ``db`` names a shard directory: an existing one, or a path ending in a slash."""
    return Path(db).is_dir() or str(db).endswith(("/", "\\"))


def check_corpus_name(corpus: str, name_max: int = 255) -> str:
    """Corpus names become directory names (``corpus=NAME``): letters, digits, ``_ . -``, short
    enough for a folder name of at most ``name_max`` bytes (the file system's limit)."""
    shown = repr(corpus) if len(corpus or "") <= 60 else repr(corpus[:40]) + "..."
    if not _CORPUS_NAME.fullmatch(corpus or ""):
        raise StoreError(
            f"corpus name {shown} cannot name a shard folder; in a shard directory use "
            "letters, digits, '_', '.' and '-' (pass --corpus NAME)"
        )
    longest = name_max - len(_PARTITION)
    if len(corpus) > longest:
        raise StoreError(
            f"corpus name {shown} has {len(corpus):,} characters, too long to name a "
            f"shard folder (at most {longest:,} here); pass a shorter --corpus NAME"
        )
    return corpus


def shard_path(table: str, corpus: str, index: int) -> str:
    """A shard file's path relative to the shard directory."""
    return f"{table}/{_PARTITION}{corpus}/shard-{index:05d}.parquet"


def file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, sha256) of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return path.stat().st_size, digest.hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path``, complete or not at all (temporary name, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no temporary file behind
        raise


# ---- header ------------------------------------------------------------------------------------
def read_header(root: Path) -> dict:
    try:
        header = json.loads((root / HEADER).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StoreError(
            f"cannot read {root / HEADER} ({e}); the shard directory is damaged, re-encode it"
        ) from None
    if header.get("format") != FORMAT or header.get("version", 0) > FORMAT_VERSION:
        raise StoreError(
            f"{root} is a shard directory of format {header.get('format')!r} version "
            f"{header.get('version')}, which this saeembed cannot read; upgrade saeembed"
        )
    return header


def write_header(root: Path, encoder: dict, shard_docs: int) -> dict:
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "shard_docs": shard_docs,
        "encoder": encoder,
    }
    write_atomically(root / HEADER, (json.dumps(header, indent=2, default=str) + "\n").encode())
    return header


# ---- manifest ----------------------------------------------------------------------------------
def read_manifest(root: Path) -> list[Shard]:
    """The completed shards, in the order they completed. A last line without its newline was cut
    by a kill and does not count; a shard listed twice counts once."""
    path = root / MANIFEST
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")[:-1]  # the part after the last newline is incomplete (or empty)
    shards, seen = [], set()
    for number, line in enumerate(lines, start=1):
        try:
            shard = Shard.from_json(line)
        except (ValueError, KeyError, TypeError) as e:
            raise StoreError(
                f"{path} line {number} is not a shard entry ({e}); the manifest is damaged, "
                "remove that line and rerun the encode to redo the shard"
            ) from None
        if (shard.corpus, shard.index) not in seen:
            seen.add((shard.corpus, shard.index))
            shards.append(shard)
    return shards


def append_manifest(root: Path, shard: Shard) -> None:
    """Commit a shard: its line is appended and synced; an incomplete last line left by a kill
    is dropped first."""
    path = root / MANIFEST
    with open(path, "a+b") as f:
        f.seek(0)
        text = f.read()
        complete = text.rfind(b"\n") + 1
        if complete != len(text):
            f.truncate(complete)
        f.seek(0, os.SEEK_END)
        f.write(shard.to_json().encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())


def check_shards(root: Path, shards: list[Shard], fingerprint: str) -> None:
    """Every listed file is there with the size the manifest gives, and every shard is of the
    directory's encoder; otherwise a one-line error naming the shard and the fix."""
    for shard in shards:
        if shard.encoder != fingerprint:
            raise StoreError(
                f"{root} mixes two encoders (shard {shard.index} of {shard.corpus!r} was encoded "
                f"by {shard.encoder[:12]}, the directory's encoder is {fingerprint[:12]}); keep "
                "one encoder per shard directory"
            )
        for table, listed in shard.files.items():
            file = root / listed.path
            if not file.is_file():
                raise StoreError(
                    f"{root}: the manifest lists {listed.path} but it is missing; restore it, or "
                    f"remove its line from {MANIFEST} and rerun the encode to redo the shard"
                )
            if file.stat().st_size != listed.bytes:
                raise StoreError(
                    f"{root}: {listed.path} has {file.stat().st_size:,} bytes, the manifest "
                    f"{listed.bytes:,} (a truncated or replaced {table} shard); restore it, or "
                    f"remove its line from {MANIFEST} and rerun the encode to redo the shard"
                )


# --- what creating a directory writes, to tell a cut-short creation from someone's files ------

LOCK = ".saeembed-shards.lock"
_CREATION_FILES = {ANALYSIS_DB, f"{ANALYSIS_DB}.wal", LOCK}
_CREATION_FOLDERS = {f"{ANALYSIS_DB}.tmp"}  # DuckDB's spill folder
_TEMPORARY = re.compile(r"\..+\.(tmp|partial)")  # the hidden names of atomic writes


def directory_state(root: Path) -> str:
    """``new`` (missing or empty), ``shards`` (it has the header), ``unfinished`` (only what
    creation writes, no header) or ``foreign``."""
    if not root.is_dir():
        return "new"
    if (root / HEADER).is_file():
        return "shards"
    entries = list(root.iterdir())
    if not entries:
        return "new"
    return "unfinished" if all(written_by_creation(p) for p in entries) else "foreign"


def written_by_creation(path: Path) -> bool:
    if path.is_symlink():
        return False
    if path.is_dir():
        return path.name in _CREATION_FOLDERS or all(written_by_creation(p) for p in path.iterdir())
    return path.name in _CREATION_FILES or bool(_TEMPORARY.fullmatch(path.name))
