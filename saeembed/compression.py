"""Compressed input: gzip, bzip2 and zstd, recognised by file suffix, read as a stream (or
decompressed whole from bytes already in memory), with damaged or truncated data reported as a
one-line `InputError`. The one decoder of compressed input in saeembed (corpora and pairs in
`saeembed.inputs`, label files, the named datasets)."""

from __future__ import annotations

import bz2
import gzip
import io
import zlib
from pathlib import Path
from typing import BinaryIO

import zstandard

from saeembed.errors import InputError

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bzip2"}

_BUFFER = 1 << 20  # bytes the stream reads ahead
# zstd is fed this much input per step: one step then yields at most ~32 MiB (the most a zstd
# block can expand is 4 bytes to 128 KiB), so a decompression bomb never arrives in one piece.
_ZSTD_STEP = 1 << 10
_DECODE_ERRORS = (OSError, EOFError, ValueError, zlib.error, zstandard.ZstdError)


def open_decompressed(path: str | Path, compression: str | None, source: str) -> io.BufferedReader:
    """The file at ``path`` as a binary stream, decompressed as ``compression`` (a suffix: .gz,
    .zst, .zstd, .bz2; None reads it as it is). Reads of damaged or truncated data raise a
    one-line `InputError` naming ``source``. Use it as a context manager."""
    file = open(path, "rb", buffering=_BUFFER)  # noqa: SIM115 -- the stream closes it
    return file if compression is None else _decoding_stream(file, compression, source)


def decompress(raw: bytes, compression: str, source: str) -> bytes:
    """``raw`` decompressed as ``compression`` (a suffix: .gz, .zst, .zstd, .bz2); damaged or
    truncated data is a one-line `InputError` naming ``source``."""
    with _decoding_stream(io.BufferedReader(io.BytesIO(raw)), compression, source) as stream:
        return stream.read()


def _decoding_stream(file: io.BufferedReader, compression: str, source: str) -> io.BufferedReader:
    kind = COMPRESSIONS[compression]
    if kind == "gzip":
        decoder = gzip.GzipFile(fileobj=file, mode="rb")
    elif kind == "bzip2":  # no bytes at all decode to none, as in bz2.decompress and gzip
        decoder = bz2.BZ2File(file, mode="rb") if file.peek(1) else io.BytesIO()
    else:
        decoder = _ZstdFrames(file)
    return io.BufferedReader(_Checked(decoder, file, kind, source), _BUFFER)


class _Checked(io.RawIOBase):
    """A decoder's output as a raw stream whose decoding errors are one-line `InputError`s;
    closing it closes the decoder and the file underneath."""

    def __init__(self, decoder: BinaryIO, file: BinaryIO, kind: str, source: str):
        self._decoder, self._file, self._kind, self._source = decoder, file, kind, source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            return self._decoder.readinto(buffer)
        except _DECODE_ERRORS as e:
            raise InputError(
                f"{self._source} is not valid {self._kind} data ({e}); "
                "re-compress it or pass it uncompressed"
            ) from None

    def readall(self) -> bytes:
        """The rest of the output in one bytes object, grown in place (not joined from pieces)."""
        out = io.BytesIO()
        while chunk := self.read(_BUFFER):
            out.write(chunk)
        return out.getvalue()

    def close(self) -> None:
        if not self.closed:
            try:
                self._decoder.close()
            finally:
                self._file.close()
        super().close()


class _ZstdFrames(io.RawIOBase):
    """zstd frames one after another (frames may omit their size), decoded in small input steps;
    a stream that ends inside a frame is an error, not a shorter document list."""

    def __init__(self, file: BinaryIO):
        self._file = file
        self._frame = None  # the frame being decoded, once it has been fed input
        self._input = b""  # read, not yet fed
        self._output = memoryview(b"")  # decoded, not yet returned

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._output:
            if not self._decode_step():
                return 0
        n = min(len(buffer), len(self._output))
        buffer[:n] = self._output[:n]
        self._output = self._output[n:]
        return n

    def _decode_step(self) -> bool:
        """Feed the next piece of input to the current frame; False at the end of the data."""
        data = self._input or self._file.read(_ZSTD_STEP)
        self._input = b""
        if not data:
            if self._frame is not None:
                raise EOFError("the data ends inside a zstd frame (a truncated file?)")
            return False
        if self._frame is None:
            self._frame = zstandard.ZstdDecompressor().decompressobj()
        self._output = memoryview(self._frame.decompress(data))
        if self._frame.eof:
            self._input, self._frame = self._frame.unused_data, None
        return True
