"""The data checks page: what training would do with this data, the findings by severity, the column profile."""

from __future__ import annotations

from typing import Any

import pandas as pd

from leadscore.features.checks import FATAL, INFO, WARNING, CheckReport
from leadscore.presentation import format as fmt
from leadscore.presentation import html

_SUMMARY_LABELS = {
    "labelled_leads": "labelled leads", "positives": "conversions", "negatives": "non-conversions",
    "positive_rate": "conversion rate", "features": "features", "event_features": "features from events",
    "label_mapping": "label mapping",
}


def headline(report: CheckReport) -> list[str]:
    """Two or three sentences: how much data, whether training would go ahead, what to look at first."""
    s = report.summary
    n, pos = s.get("labelled_leads"), s.get("positives")
    out = []
    if n is not None and pos is not None:
        out.append(f"{fmt.count(n)} labelled leads, {fmt.count(pos)} of them converted "
                   f"({fmt.percent(s.get('positive_rate'))}).")
    fatal = [p for p in report.problems if p["severity"] == FATAL]
    warnings = [p for p in report.problems if p["severity"] == WARNING]
    if fatal:
        out.append(f"Training would stop: {fmt.count(len(fatal))} fatal finding{'s' if len(fatal) != 1 else ''} "
                   f"(first: {fatal[0]['message']}).")
    else:
        out.append("Training can go ahead: no fatal finding.")
    if warnings:
        named = ", ".join(sorted({p["column"] for p in warnings if p["column"]})[:5])
        out.append(f"{fmt.count(len(warnings))} warning{'s' if len(warnings) != 1 else ''} to confirm before "
                   f"trusting the score{f' (columns {named})' if named else ''}.")
    return out


def _summary_rows(summary: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for key, value in summary.items():
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, int | float):
            text = fmt.format_value("positive_rate" if key == "positive_rate" else "leads", value)
        else:
            text = str(value)
        rows.append({"item": _SUMMARY_LABELS.get(key, fmt.label(key)), "value": text})
    return pd.DataFrame(rows)


def checks_page(report: CheckReport, title: str = "Data checks") -> str:
    """The self-contained HTML page of a data-check report."""
    problems = pd.DataFrame(report.problems, columns=["severity", "check", "column", "message"])
    order = {FATAL: 0, WARNING: 1, INFO: 2}
    problems = problems.sort_values("severity", key=lambda s: s.map(order), kind="stable")
    problems["check"] = problems["check"].str.replace("_", " ")
    columns = report.columns.copy()
    sections = [
        html.Section("Summary", [html.table(_summary_rows(report.summary), headers={"item": "", "value": ""})]),
        html.Section("Findings", [html.table(problems, row_class="severity", text_columns=("message",))],
                     intro="Fatal findings stop training; warnings need a check that the column is known when a "
                           "lead is scored; notes are for information."),
        html.Section("Columns", [html.table(columns, formats={"missing_rate": "rate", "auc_alone": "probability",
                                                              "auc_non_null": "probability",
                                                              "distinct": "count"},
                                            text_columns=("role",))],
                     intro="Every column of the lead table: how it is used, how often it is missing, and how well "
                           "it ranks the outcome alone (a leakage probe)."),
    ]
    return html.page(title, sections, summary=headline(report))
