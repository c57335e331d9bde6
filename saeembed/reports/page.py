"""One self-contained HTML page: the page template, stylesheet and script
(``saeembed/templates/report.{html,css,js}``) inlined, and the report's data as JSON in a
``<script type="application/json">`` block (``<``, ``>``, ``&`` escaped, so no document text can
close the block; the script renders text with ``textContent`` only). Pages are written
atomically (`saeembed.files.atomic_path`)."""

from __future__ import annotations

import html
from pathlib import Path

from saeembed import templates
from saeembed.analysis.settings import DEFAULT_PANELS  # noqa: F401 (the reports' default)
from saeembed.files import check_output, write_text_atomic
from saeembed.templates import script_json


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
