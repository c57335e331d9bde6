"""Page templates shipped inside the package (read with importlib.resources, so a wheel install
has them too): ``map.html`` (`saeembed.maps`) and ``report.html`` (`saeembed.reports.page`) with
``{{name}}`` placeholders, and the ``.css`` / ``.js`` each inlines. `fill` substitutes
placeholders in one pass; `script_json` is how both pages embed their data; `check` is what
`make lint` runs."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from importlib import resources

PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
# the placeholders each page template has, and so the values its caller must give
PAGES = {"map.html": ("title", "css", "data", "js"), "report.html": ("title", "css", "data", "js")}
# the stylesheets and scripts the pages inline
INLINED = ("map.css", "map.js", "report.css", "report.js")


def load(name: str) -> str:
    """The text of template ``name`` (e.g. ``map.html``)."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def fill(template: str, values: dict[str, str]) -> str:
    """Every ``{{name}}`` of ``template`` replaced by ``values[name]`` in one pass (substituted
    text is never scanned again); a placeholder without a value, or a value without a
    placeholder, is a KeyError."""
    names = set(PLACEHOLDER.findall(template))
    if names != set(values):
        raise KeyError(
            f"template placeholders {sorted(names)} do not match the values {sorted(values)}"
        )
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


class _TagBalance(HTMLParser):
    """Open and close tags of an HTML page; void elements need no closing tag."""

    VOID = {"meta", "link", "br", "hr", "img", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> at line {self.getpos()[0]} closes {self.stack[-1:]}")
        else:
            self.stack.pop()


def _code_only(text: str) -> str:
    """CSS or JS with comments and string literals blanked (newlines kept), so brackets inside
        them do not count. Regex literals are not recognised: the scripts' few have balanced brackets
    and no quotes."""
    out, i, n = [], 0, len(text)
    while i < n:
        two = text[i : i + 2]
        if two == "//":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif two == "/*":
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif text[i] in "'\"`":
            quote, j = text[i], i + 1
            while j < n and text[j] != quote:
                j += 2 if text[j] == "\\" else 1
            out.append("\n" * text.count("\n", i, j))
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _balanced(text: str, pairs: str = "(){}[]") -> list[str]:
    """Unbalanced brackets in CSS or JS outside comments and strings: a cheap check that
    catches a lost brace, not a parser."""
    closing = {pairs[i + 1]: pairs[i] for i in range(0, len(pairs), 2)}
    stack: list[tuple[str, int]] = []
    for line_no, line in enumerate(_code_only(text).splitlines(), 1):
        for ch in line:
            if ch in closing.values():
                stack.append((ch, line_no))
            elif ch in closing:
                if not stack or stack[-1][0] != closing[ch]:
                    return [f"unmatched {ch!r} at line {line_no}"]
                stack.pop()
    return [f"unclosed {ch!r} from line {n}" for ch, n in stack]


def check() -> list[str]:
    """Problems with the shipped templates: each page parses as HTML with balanced tags and has
    exactly its placeholders; CSS and JS have balanced brackets. Empty when all is well."""
    problems = []
    for page, names in PAGES.items():
        text = load(page)
        found = set(PLACEHOLDER.findall(text))
        if found != set(names):
            problems.append(f"{page}: placeholders {sorted(found)}, expected {sorted(names)}")
        parser = _TagBalance()
        parser.feed(text)
        parser.close()
        problems += [f"{page}: {e}" for e in parser.errors]
        problems += [f"{page}: <{tag}> never closed" for tag in parser.stack]
    for name in INLINED:
        problems += [f"{name}: {p}" for p in _balanced(load(name))]
    return problems


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
    """``payload`` as JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` survive
    literally (so neither ``</script>`` nor ``<!--`` in a document's text can end or alter the
    script), nor U+2028/U+2029; NaN and infinities become null (`clean`)."""
    text = json.dumps(clean(payload), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
