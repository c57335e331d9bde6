"""Compressed input: gzip, bzip2 and zstd, recognised by file suffix, decompressed whole with
damaged or truncated data reported as a one-line `InputError`. The one decoder of compressed
input in saeembed (corpora and pairs in `saeembed.inputs`, label files, the named datasets)."""

from __future__ import annotations

import bz2
import gzip

import zstandard

from saeembed.errors import InputError


def _zstd_decompress(data: bytes) -> bytes:
    """Decompress zstd data, frame after frame (frames may omit their size); a stream that ends
    inside a frame is an error, not a shorter document list."""
    out, rest = [], data
    while rest:
        frame = zstandard.ZstdDecompressor().decompressobj()
        out.append(frame.decompress(rest))
        if not frame.eof:
            raise EOFError("the data ends inside a zstd frame (a truncated file?)")
        rest = frame.unused_data
    return b"".join(out)


COMPRESSIONS = {
    ".gz": ("gzip", gzip.decompress),
    ".zst": ("zstd", _zstd_decompress),
    ".zstd": ("zstd", _zstd_decompress),
    ".bz2": ("bzip2", bz2.decompress),
}


def decompress(raw: bytes, compression: str, source: str) -> bytes:
    """``raw`` decompressed as ``compression`` (a suffix: .gz, .zst, .zstd, .bz2); damaged or
    truncated data is a one-line `InputError` naming ``source``."""
    kind, decompressor = COMPRESSIONS[compression]
    try:
        return decompressor(raw)
    except (OSError, EOFError, ValueError, zstandard.ZstdError) as e:
        raise InputError(
            f"{source} is not valid {kind} data ({e}); re-compress it or pass it uncompressed"
        ) from None
