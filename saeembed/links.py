"""Links between the pages saeembed writes (a map and its feature pages, a report and its
pages): always a relative path to a file, each segment percent-encoded, never an absolute path
or a URL with a scheme. A file name is the user's (``--map "javascript:alert(1).html"``), so it
is never pasted into an ``href`` as it is: ``:``, ``#``, ``?``, quotes and spaces are encoded,
and a browser reads the link as the file of that name beside the page."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote, unquote

__all__ = ["relative_href", "safe_href"]

# one segment of a link as `relative_href` writes it: unreserved characters, sub-delimiters and
# percent escapes; no ':' (so no scheme), no '?', '#', '\', space or control character
_SEGMENT = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=@-]|%[0-9A-Fa-f]{2})+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f/\\]")


def relative_href(target: str | Path, page_folder: str | Path) -> str | None:
    """The link from a page in ``page_folder`` to the file ``target``: its path relative to the
    folder, each segment percent-encoded (``quote``). None when ``target`` is not inside the
    folder (a link would have to climb out of it, or be absolute)."""
    relative = os.path.relpath(os.path.abspath(target), os.path.abspath(page_folder))
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or any(p in (".", "..") for p in parts):
        return None
    return "/".join(quote(part, safe="") for part in parts)


def safe_href(href: object) -> str | None:
    """``href`` when it is a plain relative link to a file (percent-encoded segments as
    `relative_href` writes them; a leading ``./`` is dropped), re-encoded; None for anything
    else: a scheme (``javascript:``, ``https:``), a host (``//``), an absolute path, ``..``, a
    query or fragment, a raw space or backslash, or an empty segment. The map's script applies
    the same rule (``saeembed/templates/map.js``)."""
    if not isinstance(href, str):
        return None
    parts = href.removeprefix("./").split("/")
    names = []
    for part in parts:
        if not _SEGMENT.fullmatch(part):
            return None
        try:
            name = unquote(part, errors="strict")
        except UnicodeDecodeError:
            return None
        if name in (".", "..") or _CONTROL.search(name):
            return None
        names.append(name)
    return "/".join(quote(name, safe="") for name in names)
