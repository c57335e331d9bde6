"""Inputs named by URL: ``s3://``, ``gs://``, ``hf://``, ``https://`` or any other fsspec
protocol. The file is copied through fsspec into a temporary local file named as the remote
one (so its format and compression are recognised the same way) and read from there; errors
name the URL. A protocol whose file system is not installed is a one-line error naming the
package to install."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from saeembed.errors import InputError

_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+)://")
# fsspec protocols whose file systems live in separate packages
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
             "abfs": "adlfs", "hf": "huggingface_hub"}  # fmt: skip


def is_url(ref: object) -> bool:
    """Whether ``ref`` is a URL with a protocol (``s3://...``), not a local path."""
    return isinstance(ref, str) and _URL.match(ref) is not None


@contextmanager
def local_copy(url: str) -> Iterator[Path]:
    """A temporary local copy of the file at ``url``, removed afterwards."""
    import fsspec

    protocol = _URL.match(url).group(1).lower()
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError:
        package = _PACKAGES.get(protocol, f"the fsspec file system for {protocol}://")
        raise InputError(
            f"reading {url} needs {package}; install it (pip install {package})"
        ) from None
    except ValueError as e:
        raise InputError(f"cannot read {url} ({e}); check the URL's protocol") from None
    name = PurePosixPath(path).name or "input"
    with tempfile.TemporaryDirectory(prefix="saeembed-input-") as tmp:
        local = Path(tmp) / name
        try:
            if fs.isdir(path):
                raise InputError(f"{url} is a directory; pass a single file")
            fs.get_file(path, str(local))
        except FileNotFoundError:
            raise InputError(f"no such file: {url}") from None
        except InputError:
            raise
        except Exception as e:  # network, credentials, permissions: fsspec backends vary
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(
                f"cannot read {url} ({message}); check the URL and your access"
            ) from None
        yield local
