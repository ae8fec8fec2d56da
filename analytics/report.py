"""The funnel report's contents: every funnel table the data allows (`funnel_tables`) and its headline numbers
(`funnel_summary`). `leadscore.presentation.funnel` writes them as CSV, PNG and one HTML page (`run_funnel` is the
entry point of `leadscore funnel`).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from leadscore.analytics.funnel import (
    ALL,
    band_conversion,
    conversion_by_channel,
    grade_summary,
    lead_grades,
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
    best, worst = ranked_channels(tables["channels"])
    if best is not None:
        out["best_channel"], out["worst_channel"] = best, worst
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def ranked_channels(channels: pd.DataFrame, *, min_share: float = 0.01, min_leads: int = 30
                    ) -> tuple[str | None, str | None]:
    """The channels converting best and worst among those with at least `min_leads` leads and `min_share`."""
    rows = channels[channels["channel"] != ALL]
    total = float(rows["leads"].sum())
    big = rows[(rows["leads"] >= max(min_leads, min_share * total)) & rows["conversion_rate"].notna()]
    if big.empty:
        return None, None
    ordered = big.sort_values("conversion_rate", ascending=False, kind="stable")
    return str(ordered["channel"].iloc[0]), str(ordered["channel"].iloc[-1])
