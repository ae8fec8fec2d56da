"""The funnel report: one CSV per table, PNG figures, funnel_summary.json and one self-contained HTML page that
opens with the sentences a revenue leader repeats; `run_funnel` is the entry point of `leadscore funnel`."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.analytics.funnel import ALL, lead_journeys
from leadscore.analytics.report import funnel_summary, funnel_tables
from leadscore.features.errors import DataError
from leadscore.features.io import read_table, write_table, write_text
from leadscore.presentation import format as fmt
from leadscore.presentation import funnel_plots, html
from leadscore.presentation.figures import png, write_png

TITLES = {
    "channels": "Conversion by channel", "pipeline": "Pipeline: volume, value, velocity, conversion",
    "lifecycle": "Lifecycle funnel", "grades": "Lead grades", "grades_by_channel": "Lead grades by channel",
    "sla_by_team": "Lead SLA by team", "sla_breaches": "Leads breaching the SLA now",
    "stalled": "Stalled leads (recycle to nurture)", "landing_urls": "Channel from landing URLs",
    "reverse_funnel": "Reverse funnel by channel", "band_conversion": "Conversion by model band",
    "reverse_funnel_bands": "Reverse funnel by model band",
}
INTROS = {
    "channels": "Conversion and median days to convert per channel, with Wilson 95% intervals; the last row is "
                "every lead.",
    "pipeline": "Per month: leads and opportunities created and deals won, their value, median days per stage and "
                "conversion between stages (cohorts by creation month).",
    "lifecycle": "Leads reaching each stage and the share of the previous stage that got there.",
    "reverse_funnel": "Leads needed per channel to win the deals that reach the revenue target at each channel's "
                      "lead -> won rate.",
    "reverse_funnel_bands": "Leads needed per model band, chained with the measured opportunity win rate.",
    "stalled": "Open leads older than twice their stage's typical cycle.",
    "sla_by_team": "Share of hand-overs touched by sales inside the agreed window, per team.",
}
PREVIEW = {"sla_breaches": 20, "stalled": 20, "landing_urls": 10}
_HIDDEN = {"landing_urls": ("x_field_1",)}


def figures(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """A figure per table that has one (name -> matplotlib Figure)."""
    figs: dict[str, Any] = {"channels": funnel_plots.channel_figure(tables["channels"])}
    makers = {
        "pipeline": funnel_plots.pipeline_figure, "lifecycle": funnel_plots.lifecycle_figure,
        "grades": funnel_plots.grades_figure, "sla_by_team": funnel_plots.sla_figure,
        "stalled": funnel_plots.stalled_figure, "landing_urls": funnel_plots.url_channel_figure,
        "reverse_funnel": funnel_plots.reverse_funnel_figure,
    }
    for name, make in makers.items():
        if name in tables:
            figs[name] = make(tables[name])
    if "reverse_funnel_bands" in tables:
        figs["reverse_funnel_bands"] = funnel_plots.reverse_funnel_figure(tables["reverse_funnel_bands"],
                                                                          name_column="band")
    return figs


def headline(tables: dict[str, pd.DataFrame], summary: dict[str, Any],
             revenue_target: float | None = None) -> list[str]:
    """2-4 sentences: conversion and time to convert, best and worst channel, leads needed for the target."""
    out = [f"Of {fmt.count(summary['leads'])} leads, {fmt.count(summary['converted'])} converted "
           f"({fmt.percent(summary['conversion_rate'])}); the median lead that converted took "
           f"{fmt.days(summary['median_days_to_convert'])} days."]
    channels = tables["channels"].set_index("channel")
    best, worst = summary.get("best_channel"), summary.get("worst_channel")
    if best and worst and best != worst:
        out.append(f"Best channel: {best} ({fmt.percent(channels.loc[best, 'conversion_rate'])} convert); worst: "
                   f"{worst} ({fmt.percent(channels.loc[worst, 'conversion_rate'])}).")
    if "reverse_funnel" in tables:
        rf = tables["reverse_funnel"].set_index("channel")
        target = f"the revenue target of {fmt.money(revenue_target)}" if revenue_target else "the revenue target"
        sentence = f"Reaching {target} takes {fmt.count(summary['deals_needed'])} won deals"
        if ALL in rf.index and not pd.isna(rf.loc[ALL, "leads_needed"]):
            sentence += f": {fmt.count(rf.loc[ALL, 'leads_needed'])} new leads at today's channel mix"
            if best in rf.index and not pd.isna(rf.loc[best, "leads_needed"]):
                sentence += f", or {fmt.count(rf.loc[best, 'leads_needed'])} from {best} alone"
        out.append(sentence + ".")
    elif summary.get("stalled_leads"):
        out.append(f"{fmt.count(summary['stalled_leads'])} open leads have stalled and should go back to nurture.")
    return out


def _numbers(summary: dict[str, Any]) -> pd.DataFrame:
    """The headline numbers as labelled rows (what funnel_summary.json holds, readable)."""
    labels = {"leads": ("leads", "count"), "converted": ("converted", "count"),
              "conversion_rate": ("conversion rate", "rate"),
              "median_days_to_convert": ("median days to convert", "days"),
              "opportunities": ("opportunities", "count"), "won": ("deals won", "count"),
              "win_rate": ("win rate (won / closed opportunities)", "rate"), "lead_to_won": ("lead -> won", "rate"),
              "median_days_to_close": ("median days opportunity -> won", "days"),
              "stalled_leads": ("stalled open leads", "count"),
              "sla_share_within": ("hand-overs touched inside the SLA", "rate"),
              "sla_breaching_now": ("leads breaching the SLA now", "count"),
              "deals_needed": ("won deals needed for the target", "count"),
              "best_channel": ("best channel", "text"), "worst_channel": ("worst channel", "text")}
    rows = [{"": text, "value": value if kind == "text" else fmt.format_number(kind, value)}
            for key, (text, kind) in labels.items() if (value := summary.get(key)) is not None]
    return pd.DataFrame(rows)


def render_html(tables: dict[str, pd.DataFrame], images: dict[str, str], summary: dict[str, Any],
                revenue_target: float | None = None) -> str:
    """The self-contained funnel page."""
    sections = [html.Section("Headline numbers", [html.table(_numbers(summary), headers={"value": ""})])]
    for name, table in tables.items():
        parts = []
        if name in images:
            parts.append(html.figure(images[name], name))
        shown = table.drop(columns=[c for c in _HIDDEN.get(name, ()) if c in table.columns])
        caption = ""
        if name in PREVIEW and len(table) > PREVIEW[name]:
            caption = f"First {PREVIEW[name]} of {len(table):,} rows; all in {name}.csv."
        parts.append(html.table(shown, max_rows=PREVIEW.get(name), caption=caption))
        sections.append(html.Section(TITLES.get(name, fmt.label(name)), parts, intro=INTROS.get(name, "")))
    return html.page("Funnel report", sections, summary=headline(tables, summary, revenue_target))


def funnel_report(
    journeys: pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    events: pd.DataFrame | None = None,
    as_of: pd.Timestamp | str | None = None,
    window_days: float | None = None,
    revenue_target: float | None = None,
    average_deal_value: float | None = None,
    sla_hours: float = 24.0,
    stalled_factor: float = 2.0,
    scored: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write funnel_report.html (figures embedded), one CSV per table, PNG figures and funnel_summary.json."""
    out_dir = Path(out_dir)
    tables = funnel_tables(journeys, events=events, as_of=as_of, window_days=window_days,
                           revenue_target=revenue_target, average_deal_value=average_deal_value,
                           sla_hours=sla_hours, stalled_factor=stalled_factor, scored=scored)
    files: dict[str, Path] = {}
    images: dict[str, str] = {}
    for name, fig in figures(tables).items():
        data = png(fig)
        files[f"plot_{name}"] = write_png(data, out_dir / "plots" / f"{name}.png")
        images[name] = base64.b64encode(data).decode("ascii")
    for name, table in tables.items():
        files[name] = write_table(table, out_dir / f"{name}.csv")
    summary = funnel_summary(tables)
    files["summary"] = write_text(json.dumps(summary, indent=2, sort_keys=True, default=str),
                                  out_dir / "funnel_summary.json")
    files["html"] = write_text(render_html(tables, images, summary, revenue_target), out_dir / "funnel_report.html")
    return files


def run_funnel(
    leads_path: str | os.PathLike,
    outcomes_path: str | os.PathLike | None = None,
    stages_path: str | os.PathLike | None = None,
    events_path: str | os.PathLike | None = None,
    *,
    out_dir: str | os.PathLike,
    pipeline_path: str | os.PathLike | None = None,
    scored_path: str | os.PathLike | None = None,
    revenue_target: float | None = None,
    average_deal_value: float | None = None,
    as_of: str | None = None,
    window_days: float | None = None,
    sla_hours: float = 24.0,
    stalled_factor: float = 2.0,
    id_column: str = "lead_id",
    created_column: str = "created_at",
    channel_column: str = "lead_source",
    converted_column: str = "converted_at",
) -> dict[str, Any]:
    """Read the files, write the funnel report into `out_dir`; return {"summary": ..., "files": {name: path}}."""
    if outcomes_path is None and stages_path is None:
        raise DataError("funnel: give an outcomes file or a stages file (conversion comes from one of them)")
    leads = read_table(leads_path, what="leads")
    outcomes = read_table(outcomes_path, what="outcomes") if outcomes_path is not None else None
    stages = read_table(stages_path, what="stages") if stages_path is not None else None
    events = read_table(events_path, what="events") if events_path is not None else None
    pipeline = read_table(pipeline_path, what="pipeline") if pipeline_path is not None else None
    scored = read_table(scored_path, what="scored leads") if scored_path is not None else None
    journeys = lead_journeys(leads, outcomes, stages, pipeline, id_column=id_column, created_column=created_column,
                             channel_column=channel_column, converted_column=converted_column)
    files = funnel_report(journeys, out_dir, events=events, as_of=as_of, window_days=window_days,
                          revenue_target=revenue_target, average_deal_value=average_deal_value,
                          sla_hours=sla_hours, stalled_factor=stalled_factor, scored=scored)
    summary = json.loads(Path(files["summary"]).read_text(encoding="utf-8"))
    return {"summary": summary, "files": {k: str(v) for k, v in files.items()}}
