"""One self-contained HTML page: the page template, stylesheet and script
(``saeembed/templates/report.{html,css,js}``) inlined, and the report's data as JSON in a
``<script type="application/json">`` block (``<``, ``>``, ``&`` escaped, so no document text can
close the block; the script renders text with ``textContent`` only). Pages are written
atomically (`saeembed.files.atomic_path`)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from saeembed import templates
from saeembed.files import check_output, write_text_atomic

DEFAULT_PANELS = 20  # concepts shown up close in a diff or preference report


def clean(value):
    """``value`` with NaN and infinities as None (JSON has neither) and numpy scalars as Python's."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return clean(value.item())
    return value


def script_json(payload: dict) -> str:
    """JSON safe inside a ``<script>`` element."""
    text = json.dumps(clean(payload), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def render(title: str, payload: dict) -> str:
    """The page of ``payload`` (its ``kind`` tells the script what to draw)."""
    parts = {
        "title": html.escape(title),
        "css": templates.load("report.css"),
        "js": templates.load("report.js"),
        "data": script_json(payload),
    }
    return templates.fill(templates.load("report.html"), parts)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, in a folder that must exist."""
    return write_text_atomic(check_output(path), text)


def iframe(page: str, height: int = 800) -> str:
    """``page`` inside an ``<iframe srcdoc>`` (for Jupyter's ``_repr_html_``: the page's script
    and style stay in their own document)."""
    return (
        f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{height}px;'
        'border:1px solid #ddd" sandbox="allow-scripts"></iframe>'
    )
