"""The one HTML page shell and table renderer (jinja2), and Markdown through a library.

Every report is a self-contained page: inline CSS, figures as base64 PNG, no scripts and no external links. It
opens with a few plain sentences (`summary`), then sections. Tables sit in a box that scrolls sideways inside
the page, so a wide table never pushes the page wider than the window; numbers follow `presentation.format`.
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from leadscore.presentation import format as fmt

CSS = """
*{box-sizing:border-box}
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;color:#222;margin:0;background:#fff;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:1.5em 1.2em 3em}
h1{font-size:1.7em;margin:0.2em 0 0.6em}
h2{font-size:1.3em;margin:1.8em 0 0.5em;border-bottom:1px solid #ddd;padding-bottom:0.2em}
h3{font-size:1.1em;margin:1.4em 0 0.4em}
h4,h5,h6{font-size:1em}
p,li{max-width:78ch}
.summary{background:#eef5ff;border-left:4px solid #36c;padding:0.6em 1em;margin:0 0 1.5em}
.summary p{font-size:1.08em;margin:0.45em 0}
.note,figcaption,.meta{color:#555;font-size:0.9em}
.table-wrap{overflow-x:auto;max-width:100%;margin:0.5em 0 1.4em}
table{border-collapse:collapse;font-size:13px}
th,td{padding:4px 9px;border-bottom:1px solid #e2e2e2;vertical-align:top}
th{background:#f4f4f4;text-align:left;font-weight:600}
td.num,th.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.text{min-width:16em;max-width:34em;overflow-wrap:break-word}
td.meaning{color:#555;min-width:18em;max-width:40em}
tr.fatal td,tr.shifted td{background:#fde2e2}tr.warning td,tr.changed td{background:#fff6d5}
figure{margin:1em 0 2em}img{max-width:100%;height:auto}
code{background:#f3f3f3;padding:0 3px;border-radius:2px;overflow-wrap:anywhere}
.card{border-top:2px solid #ccc;margin-top:2.5em}
"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title><style>{{ css }}</style></head>
<body><main>
<h1>{{ title }}</h1>
{% if subtitle %}<p class="meta">{{ subtitle }}</p>{% endif %}
{% if summary %}
<section class="summary">
{% for sentence in summary %}<p>{{ sentence }}</p>
{% endfor %}
</section>
{% endif %}
{% for section in sections %}
<section>{% if section.title %}<h2>{{ section.title }}</h2>{% endif %}
{% if section.intro %}<p>{{ section.intro }}</p>{% endif %}
{% for part in section.parts %}{{ part }}
{% endfor %}
{% for note in section.notes %}<p class="note">{{ note }}</p>
{% endfor %}
</section>
{% endfor %}
</main></body></html>
"""

_TABLE = """<div class="table-wrap"><table>
{% if caption %}<caption class="note">{{ caption }}</caption>{% endif %}
<thead><tr>
{% for h in header %}<th class="{{ h.cls }}"{% if h.tip %} title="{{ h.tip }}"{% endif %}>{{ h.text }}</th>
{% endfor %}
</tr></thead>
<tbody>
{% for row in rows %}<tr{% if row.cls %} class="{{ row.cls }}"{% endif %}>
{% for c in row.cells %}<td class="{{ c.cls }}">{{ c.text }}</td>{% endfor %}
</tr>
{% endfor %}
</tbody></table></div>"""


def _environment() -> Any:
    from jinja2 import Environment

    return Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)


def markup(text: str) -> Any:
    """Mark already-safe HTML (rendered by this module) so the page template does not escape it again."""
    from markupsafe import Markup

    return Markup(text)


@dataclass
class Section:
    """A titled part of a page: an intro sentence, HTML parts (tables, figures, lists) and notes."""

    title: str
    parts: list[Any] = field(default_factory=list)
    intro: str = ""
    notes: Sequence[str] = ()


def page(title: str, sections: Sequence[Section], *, summary: Sequence[str] = (), subtitle: str = "") -> str:
    """The whole self-contained page: title, the summary sentences a reader can repeat, then the sections."""
    template = _environment().from_string(_PAGE)
    return template.render(title=title, subtitle=subtitle, summary=list(summary), sections=list(sections),
                           css=markup(CSS))


def _is_number(value: Any) -> bool:
    import numpy as np

    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


def table(
    frame: pd.DataFrame,
    *,
    formats: Mapping[str, str | Callable[[Any], str]] | None = None,
    headers: Mapping[str, str] | None = None,
    index: bool = False,
    max_rows: int | None = None,
    caption: str = "",
    row_class: str | None = None,
    text_columns: Sequence[str] = (),
) -> Any:
    """A DataFrame as a scrolling HTML table: readable headers, every number in the format convention.

    `formats` maps a column to a number kind (see `format.format_number`) or a callable; other columns are
    formatted by their name (`format.kind_of`). `headers` overrides header text. Metric headers carry their
    meaning as a tooltip. `row_class` names a column whose value becomes the row's CSS class (e.g. severity).
    """
    formats = dict(formats or {})
    headers = dict(headers or {})
    if index:
        frame = frame.reset_index()
    if frame.empty:
        return markup("<p class='note'>None.</p>")
    shown = frame.head(max_rows) if max_rows else frame
    if max_rows and len(frame) > max_rows:
        caption = caption or f"First {max_rows:,} of {len(frame):,} rows."
    columns = list(shown.columns)

    def cell(col: Any, value: Any) -> dict[str, str]:
        how = formats.get(col)
        if callable(how):
            text = how(value)
        elif isinstance(how, str) and (_is_number(value) or value is None):
            text = fmt.format_number(how, value)
        else:
            text = fmt.format_value(str(col), value)
        numeric = _is_number(value) and col not in text_columns
        return {"text": text, "cls": "num" if numeric else ("text" if col in text_columns else "")}

    numeric_cols = {c for c in columns if pd.api.types.is_numeric_dtype(shown[c].dtype)
                    and not pd.api.types.is_bool_dtype(shown[c].dtype)}
    header = [{"text": headers.get(c, fmt.label(c, short=True)), "tip": fmt.meaning(str(c)),
               "cls": "num" if c in numeric_cols else ""} for c in columns]
    rows = []
    for values in shown.itertuples(index=False, name=None):
        record = dict(zip(columns, values, strict=True))
        rows.append({"cells": [cell(c, record[c]) for c in columns],
                     "cls": str(record.get(row_class, "")) if row_class else ""})
    return markup(_environment().from_string(_TABLE).render(header=header, rows=rows, caption=caption))


def metrics_table(metrics: Mapping[str, Mapping[str, Any]], keys: Sequence[str], *,
                  cells: Callable[[str, str, Any], str] | None = None) -> Any:
    """Metrics as rows (plain label and one-line meaning), one column per scorer.

    `metrics` maps a scorer's display name to its metric values; `cells(scorer, key, value)` may format a cell
    (e.g. with an interval); by default the metric's own convention.
    """
    rows = []
    for key in keys:
        if not any(key in values for values in metrics.values()):
            continue
        row: dict[str, Any] = {"metric": fmt.label(key)}
        for name, values in metrics.items():
            value = values.get(key)
            row[name] = cells(name, key, value) if cells else fmt.metric(key, value)
        row["what it means"] = fmt.meaning(key)
        rows.append(row)
    frame = pd.DataFrame(rows)
    return table(frame, headers={"metric": "metric"}, text_columns=("what it means",))


def figure(data: str, alt: str, caption: str = "") -> Any:
    """An embedded PNG (base64 text) with its caption."""
    cap = f"<figcaption>{_html.escape(caption)}</figcaption>" if caption else ""
    return markup(f'<figure><img src="data:image/png;base64,{data}" alt="{_html.escape(alt)}">{cap}</figure>')


def paragraph(text: str, *, cls: str = "") -> Any:
    """One escaped paragraph."""
    attr = f' class="{cls}"' if cls else ""
    return markup(f"<p{attr}>{_html.escape(text)}</p>")


def bullets(items: Sequence[str]) -> Any:
    """An escaped bullet list."""
    return markup("<ul>" + "".join(f"<li>{_html.escape(i)}</li>" for i in items) + "</ul>")


def markdown(text: str, *, shift_headings: int = 1) -> Any:
    """Markdown (headings, lists, tables, code, bold) as HTML; raw HTML in the text is shown, never run.

    Headings move down `shift_headings` levels so a document's title sits below the page's own; tables get the
    same scrolling box as every other table.
    """
    import markdown as md

    # Escape first: a column name or message from the data may contain "<"; it must read as text.
    safe = _html.escape(text, quote=False)
    if shift_headings:
        safe = re.sub(r"^(#{1,6}) ", lambda m: "#" * min(len(m.group(1)) + shift_headings, 6) + " ", safe,
                      flags=re.MULTILINE)
    body = md.markdown(safe, extensions=["tables"], output_format="html")
    body = body.replace("<table>", '<div class="table-wrap"><table>').replace("</table>", "</table></div>")
    return markup(body)
