"""The funnel report: every funnel table as CSV, plots as PNG and one self-contained HTML page, plus `run_funnel`,
the entry point of `leadscore funnel` (reads files through features.io, writes the report, returns a summary).
"""

from __future__ import annotations

import base64
import json
import math
import os
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.analytics import plots
from leadscore.analytics.funnel import (
    ALL,
    band_conversion,
    conversion_by_channel,
    grade_summary,
    lead_grades,
    lead_journeys,
    lead_sla,
    lifecycle_funnel,
    parse_landing_urls,
    pipeline_metrics,
    reverse_funnel,
    sla_breaches,
    sla_by_team,
    stalled_leads,
)
from leadscore.features.errors import DataError
from leadscore.features.io import read_table, write_table, write_text


def _has(journeys: pd.DataFrame, *columns: str) -> bool:
    return all(c in journeys.columns for c in columns)


def funnel_tables(
    journeys: pd.DataFrame,
    *,
    events: pd.DataFrame | None = None,
    as_of: pd.Timestamp | str | None = None,
    window_days: float | None = None,
    revenue_target: float | None = None,
    average_deal_value: float | None = None,
    sla_hours: float = 24.0,
    stalled_factor: float = 2.0,
    scored: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """Every funnel table the data allows (stage-, SLA- and URL-based tables only when their columns exist).

    The reverse funnel needs `revenue_target`; the deal value defaults to the mean value of won deals (else of
    opportunities). `scored` (band + label per lead) adds the reverse funnel of the model's bands, chained
    with the measured opportunity win rate.
    """
    staged = _has(journeys, "srl_at", "sql_at", "opportunity_at", "won_at", "lost_at")
    tables: dict[str, pd.DataFrame] = {}
    channels = conversion_by_channel(journeys, as_of=as_of, window_days=window_days)
    tables["channels"] = channels
    tables["stalled"] = stalled_leads(journeys, as_of=as_of, factor=stalled_factor)
    if staged:
        tables["pipeline"] = pipeline_metrics(journeys, as_of=as_of)
        tables["lifecycle"] = lifecycle_funnel(journeys, as_of=as_of)
    if staged or events is not None:
        grades = lead_grades(journeys, events, as_of=as_of)
        tables["grades"] = grade_summary(grades)
        tables["grades_by_channel"] = grade_summary(grades, by="channel")
    if _has(journeys, "first_touch_at") and (_has(journeys, "handed_over_at") or staged):
        per_lead = lead_sla(journeys, window_hours=sla_hours, as_of=as_of)
        tables["sla_by_team"] = sla_by_team(per_lead)
        tables["sla_breaches"] = sla_breaches(per_lead)
    if "landing_url" in journeys.columns:
        parsed = parse_landing_urls(journeys["landing_url"])
        parsed.insert(0, "lead_id", journeys["lead_id"].to_numpy())
        tables["landing_urls"] = parsed
    if revenue_target is not None:
        deal = average_deal_value or _average_deal_value(journeys)
        rate_column = "lead_to_won" if "lead_to_won" in channels.columns else "conversion_rate"
        tables["reverse_funnel"] = reverse_funnel(revenue_target, deal, channels, rate_column=rate_column)
        if scored is not None:
            bands = band_conversion(scored)
            win = channels.loc[channels["channel"] == ALL, "win_rate"] if "win_rate" in channels else None
            win_rate = float(win.iloc[0]) if win is not None and len(win) and math.isfinite(win.iloc[0]) else None
            tables["band_conversion"] = bands
            tables["reverse_funnel_bands"] = reverse_funnel(revenue_target, deal, bands, name_column="band",
                                                            rate_column="conversion_rate", win_rate=win_rate)
    return tables


def _average_deal_value(journeys: pd.DataFrame) -> float:
    if "deal_value" not in journeys.columns:
        raise DataError("reverse funnel: no deal_value column; pass average_deal_value")
    values = journeys["deal_value"]
    if "won_at" in journeys.columns and values[journeys["won_at"].notna()].notna().any():
        values = values[journeys["won_at"].notna()]
    mean = float(values.mean())
    if not math.isfinite(mean) or mean <= 0:
        raise DataError("reverse funnel: no usable deal values; pass average_deal_value")
    return mean


def _figures(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    figs: dict[str, Any] = {"channels": plots.channel_figure(tables["channels"])}
    makers = {
        "pipeline": plots.pipeline_figure, "lifecycle": plots.lifecycle_figure, "grades": plots.grades_figure,
        "sla_by_team": plots.sla_figure, "stalled": plots.stalled_figure, "landing_urls": plots.url_channel_figure,
        "reverse_funnel": plots.reverse_funnel_figure,
    }
    for name, make in makers.items():
        if name in tables:
            figs[name] = make(tables[name])
    if "reverse_funnel_bands" in tables:
        figs["reverse_funnel_bands"] = plots.reverse_funnel_figure(tables["reverse_funnel_bands"], name_column="band")
    return figs


_TITLES = {
    "channels": "Conversion by channel", "pipeline": "Pipeline: volume, value, velocity, conversion",
    "lifecycle": "Lifecycle funnel", "grades": "Lead grades", "grades_by_channel": "Lead grades by channel",
    "sla_by_team": "Lead SLA by team", "sla_breaches": "Leads breaching the SLA now",
    "stalled": "Stalled leads (recycle to nurture)", "landing_urls": "Channel from landing URLs",
    "reverse_funnel": "Reverse funnel by channel", "band_conversion": "Conversion by model band",
    "reverse_funnel_bands": "Reverse funnel by model band",
}
_PREVIEW = {"sla_breaches": 20, "stalled": 20, "landing_urls": 10}


def _html(tables: dict[str, pd.DataFrame], images: dict[str, str], summary: dict[str, Any]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Funnel report</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table.t{border-collapse:collapse;"
        "margin:0.5em 0 1.5em;font-size:0.85em}table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;"
        "text-align:right}img{max-width:100%}.note{color:#555;font-size:0.9em}",
        "</style></head><body><h1>Funnel report</h1>",
        f"<p class='note'>{escape(json.dumps(summary, default=str))}</p>",
    ]
    for name, table in tables.items():
        parts.append(f"<h2>{escape(_TITLES.get(name, name))}</h2>")
        if name in images:
            parts.append(f"<img alt='{escape(name)}' src='data:image/png;base64,{images[name]}'>")
        shown = table.head(_PREVIEW[name]) if name in _PREVIEW else table
        if len(shown) < len(table):
            parts.append(f"<p class='note'>first {len(shown)} of {len(table):,} rows; all in {name}.csv</p>")
        parts.append(shown.to_html(index=False, border=0, classes="t", na_rep="",
                                   float_format=lambda v: f"{v:,.3f}"))
    parts.append("</body></html>")
    return "\n".join(parts)


def funnel_summary(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Headline numbers from the tables as plain JSON values."""
    total = tables["channels"].set_index("channel").loc[ALL]
    out: dict[str, Any] = {"leads": int(total["leads"]), "converted": int(total["converted"]),
                           "conversion_rate": float(total["conversion_rate"]),
                           "median_days_to_convert": float(total["median_days_to_convert"]),
                           "stalled_leads": len(tables["stalled"])}
    for key in ("win_rate", "lead_to_won", "median_days_to_close"):
        if key in total.index:
            out[key] = float(total[key])
    for key in ("opportunities", "won"):
        if key in total.index:
            out[key] = int(total[key])
    if "lifecycle" in tables:
        out["lifecycle"] = {row.stage: float(row.rate_from_previous) for row in tables["lifecycle"].itertuples()}
    if "sla_by_team" in tables:
        sla = tables["sla_by_team"].set_index("team").loc[ALL]
        out["sla_share_within"] = float(sla["share_within"])
        out["sla_breaching_now"] = int(sla["breaching"])
    if "reverse_funnel" in tables:
        rf = tables["reverse_funnel"]
        out["deals_needed"] = int(rf["deals_needed"].iloc[0])
        out["leads_needed"] = {str(r.channel): (None if pd.isna(r.leads_needed) else int(r.leads_needed))
                               for r in rf.itertuples()}
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


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
    """Write funnel_report.html (plots embedded), one CSV per table, PNG plots and funnel_summary.json."""
    out_dir = Path(out_dir)
    tables = funnel_tables(journeys, events=events, as_of=as_of, window_days=window_days,
                           revenue_target=revenue_target, average_deal_value=average_deal_value,
                           sla_hours=sla_hours, stalled_factor=stalled_factor, scored=scored)
    files: dict[str, Path] = {}
    images: dict[str, str] = {}
    for name, fig in _figures(tables).items():
        png = plots.figure_png(fig)
        files[f"plot_{name}"] = plots.write_png(png, out_dir / "plots" / f"{name}.png")
        images[name] = base64.b64encode(png).decode("ascii")
    for name, table in tables.items():
        files[name] = write_table(table, out_dir / f"{name}.csv")
    summary = funnel_summary(tables)
    files["summary"] = write_text(json.dumps(summary, indent=2, sort_keys=True, default=str),
                                  out_dir / "funnel_summary.json")
    files["html"] = write_text(_html(tables, images, summary), out_dir / "funnel_report.html")
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


