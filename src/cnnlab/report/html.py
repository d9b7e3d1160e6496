"""Pieces of a self-contained HTML page: escaped text, tables, images embedded as data URIs.

Nothing is fetched when the page opens (no scripts, fonts or stylesheets from elsewhere), so a
report opens from disk, from an e-mail attachment or offline, and shows the same everywhere.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from matplotlib.figure import Figure

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:1.6rem;margin:.2rem 0 .3rem}h2{font-size:1.2rem;margin:2rem 0 .6rem;
border-bottom:1px solid #d9dde3;padding-bottom:.3rem}
.sub{color:#5b6474;margin:0 0 1rem}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:1rem 0}
.card{background:#fff;border:1px solid #d9dde3;border-radius:8px;padding:10px 14px;min-width:130px}
.card b{display:block;font-size:1.35rem}.card span{color:#5b6474;font-size:.85rem}
table{border-collapse:collapse;background:#fff;font-size:.9rem;margin:.4rem 0}
th,td{border:1px solid #d9dde3;padding:4px 9px;text-align:right}
th{background:#eef0f4}td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto;background:#fff;border:1px solid #d9dde3;border-radius:6px}
pre{background:#fff;border:1px solid #d9dde3;border-radius:6px;padding:10px;overflow:auto;
font-size:.8rem;line-height:1.35}
details{margin:.5rem 0}summary{cursor:pointer;color:#2a5bd7}
.note{color:#8a5a00}
.row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}.row img{max-width:49%}
"""


def esc(value: object) -> str:
    """``value`` as HTML text."""
    return html.escape(str(value), quote=True)


def png_bytes(figure: Figure, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def image(source: Path | bytes, alt: str) -> str:
    """An ``<img>`` with the PNG embedded (a file path or bytes); empty if the file is absent."""
    if isinstance(source, Path):
        if not source.is_file():
            return ""
        source = source.read_bytes()
    data = base64.b64encode(source).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """An HTML table of escaped cells."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def cards(items: Sequence[tuple[str, str]]) -> str:
    """Headline figures as cards: [(value, caption)]."""
    inner = "".join(
        f'<div class="card"><b>{esc(v)}</b><span>{esc(c)}</span></div>' for v, c in items
    )
    return f'<div class="cards">{inner}</div>'


def pre(text: str, summary: str | None = None) -> str:
    """Preformatted text, folded under ``summary`` when given."""
    block = f"<pre>{esc(text)}</pre>"
    return f"<details><summary>{esc(summary)}</summary>{block}</details>" if summary else block


def section(title: str, *parts: str) -> str:
    """A titled section; empty parts are dropped, and a section with none is left out."""
    body = "".join(p for p in parts if p)
    return f"<section><h2>{esc(title)}</h2>{body}</section>" if body else ""


def row(*parts: str) -> str:
    """Parts side by side (wrapping on narrow screens)."""
    return f'<div class="row">{"".join(parts)}</div>'


def note(text: str) -> str:
    """A remark shown in amber (something missing or skipped)."""
    return f'<p class="note">{esc(text)}</p>'


def page(title: str, subtitle: str, sections: Sequence[str]) -> str:
    """The whole document."""
    body = "".join(sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f'<body><main><h1>{esc(title)}</h1><p class="sub">{esc(subtitle)}</p>{body}'
        "</main></body></html>\n"
    )
