"""Funnel figures: each function takes a table from `analytics.funnel` and returns a matplotlib `Figure`.

Built with `presentation.figures` (no pyplot state): a notebook displays a returned figure as it is, and
`figures.png` / `figures.save_png` turn one into PNG bytes or a file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from leadscore.analytics.funnel import ALL
from leadscore.presentation.figures import figure, png, save_png

__all__ = ["channel_figure", "pipeline_figure", "lifecycle_figure", "reverse_funnel_figure", "sla_figure",
           "grades_figure", "stalled_figure", "url_channel_figure", "png", "save_png"]


def _errors(table: pd.DataFrame, rate: str, low: str, high: str) -> np.ndarray:
    return np.vstack([(table[rate] - table[low]).clip(lower=0), (table[high] - table[rate]).clip(lower=0)]) * 100


def channel_figure(table: pd.DataFrame, *, by: str = "channel") -> Any:
    """Conversion rate by channel with 95% CIs (and lead -> won, win rate when the table has them)."""
    rows = table[table[by] != ALL].iloc[::-1]
    panels = [("conversion_rate", "ci_low", "ci_high", "lead -> opportunity (%)")]
    if "lead_to_won" in rows.columns:
        panels += [("win_rate", "win_ci_low", "win_ci_high", "opportunity -> won (%)"),
                   ("lead_to_won", "lead_to_won_ci_low", "lead_to_won_ci_high", "lead -> won (%)")]
    fig, axes = figure(1, len(panels), size=(4.2 * len(panels), 0.4 * len(rows) + 1.8), sharey=True)
    axes = np.atleast_1d(axes)
    overall = table[table[by] == ALL]
    for ax, (rate, low, high, title) in zip(axes, panels, strict=True):
        ax.barh(rows[by], rows[rate] * 100, xerr=_errors(rows, rate, low, high), color="#4c72b0", capsize=2)
        if len(overall):
            ax.axvline(float(overall[rate].iloc[0]) * 100, color="grey", ls="--", lw=1, label="all leads")
        ax.set_xlabel(title)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle("Conversion by channel (95% Wilson intervals)")
    return fig


def pipeline_figure(metrics: pd.DataFrame) -> Any:
    """The 4 V per period: volume, value, velocity (median days per stage) and stage-to-stage conversion."""
    fig, axes = figure(2, 2, size=(12, 7), sharex=True)
    x = metrics["period"]
    ax = axes[0, 0]
    ax.plot(x, metrics["leads"], marker="o", label="leads created")
    ax.plot(x, metrics["opportunities"], marker="o", label="opportunities opened")
    if "won" in metrics:
        ax.plot(x, metrics["won"], marker="o", label="deals won")
    ax.set_title("Volume")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    if "pipeline_value" in metrics:
        ax.bar(x, metrics["pipeline_value"] / 1000, label="pipeline value opened (k)")
    if "won_value" in metrics:
        ax.bar(x, metrics["won_value"] / 1000, label="won value (k)")
    ax.set_title("Value")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    for col in [c for c in metrics.columns if c.startswith("days_")]:
        ax.plot(x, metrics[col], marker=".", label=col.removeprefix("days_").replace("_", " -> "))
    ax.set_title("Velocity: median days per stage (cohort)")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    for col in [c for c in metrics.columns if c.startswith("rate_")]:
        ax.plot(x, metrics[col] * 100, marker=".", label=col.removeprefix("rate_").replace("_", " -> "))
    ax.set_title("Conversion between stages (%, cohort)")
    ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.tick_params(axis="x", rotation=60)
    return fig


def lifecycle_figure(funnel: pd.DataFrame) -> Any:
    """Funnel bars MQL -> won with the rate from the previous stage."""
    fig, ax = figure(size=(7, 4))
    rows = funnel.iloc[::-1]
    bars = ax.barh(rows["stage"], rows["leads"], color="#55a868")
    for bar, rate, base in zip(bars, rows["rate_from_previous"], rows["base"], strict=True):
        ax.annotate(f" {bar.get_width():,.0f}  ({rate:.1%} of {base})", (bar.get_width(), bar.get_y() + 0.4),
                    va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("leads reaching the stage (log scale)")
    ax.set_title("Lifecycle funnel")
    return fig


def reverse_funnel_figure(table: pd.DataFrame, *, name_column: str = "channel") -> Any:
    """Leads needed per channel (or band) to reach the revenue target."""
    rows = table.dropna(subset=["leads_needed"]).sort_values("leads_needed", ascending=False)
    fig, ax = figure(size=(7, 0.4 * len(rows) + 1.5))
    ax.barh(rows[name_column], rows["leads_needed"].astype(float), color="#c44e52")
    deals = int(table["deals_needed"].iloc[0]) if len(table) else 0
    ax.set_xlabel(f"leads needed for {deals:,} won deals")
    ax.set_title("Reverse funnel")
    return fig


def sla_figure(by_team: pd.DataFrame) -> Any:
    """Share of hand-overs touched inside the SLA window and median hours to touch, per team."""
    fig, (ax1, ax2) = figure(1, 2, size=(10, 3.8))
    ax1.bar(by_team["team"], by_team["share_within"] * 100,
            yerr=_errors(by_team, "share_within", "ci_low", "ci_high"), capsize=3, color="#8172b2")
    ax1.set_ylabel("touched inside the window (%)")
    ax1.set_ylim(0, 100)
    ax2.bar(by_team["team"], by_team["median_hours_to_touch"], color="#937860")
    ax2.set_ylabel("median hours to first touch")
    fig.suptitle("Lead SLA by team")
    return fig


def grades_figure(summary: pd.DataFrame) -> Any:
    """Leads per grade."""
    fig, ax = figure(size=(6, 3.5))
    ax.bar(summary["grade"], summary["leads"], color="#64b5cd")
    for i, (n, share) in enumerate(zip(summary["leads"], summary["share"], strict=True)):
        ax.annotate(f"{share:.0%}", (i, n), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("leads")
    ax.set_title("Lead grades")
    return fig


def stalled_figure(stalled: pd.DataFrame) -> Any:
    """Stalled leads per channel and stage."""
    fig, ax = figure(size=(7, 4))
    if len(stalled):
        counts = stalled.groupby(["channel", "stage"]).size().unstack("stage", fill_value=0)
        counts.plot.barh(stacked=True, ax=ax)
    ax.set_xlabel("stalled leads (open, older than the threshold)")
    ax.set_title("Stalled leads to recycle to nurture")
    return fig


def url_channel_figure(parsed: pd.DataFrame, declared: pd.Series | None = None) -> Any:
    """Leads per channel read from landing URLs (and the declared channel beside it, when given)."""
    fig, ax = figure(size=(7, 4))
    counts = pd.DataFrame({"from URL": parsed["channel"].value_counts()})
    if declared is not None:
        counts["declared"] = declared.astype("str").value_counts()
    counts.fillna(0).sort_values("from URL").plot.barh(ax=ax)
    ax.set_xlabel("leads")
    ax.set_title("Channel from landing URL parameters")
    return fig
