"""The comparison report (model vs rules, or any two scorers): figures, one HTML page, CSV tables, JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.features.io import write_table, write_text
from leadscore.presentation import format as fmt
from leadscore.presentation import html
from leadscore.presentation.figures import COLOURS, GREY, base64_png, figure, percent_axis, thousands
from leadscore.training.compare import Comparison

CAPACITY_POINTS = (0.05, 0.1, 0.2, 0.3, 0.5)
_RANKING = ("roc_auc", "pr_auc")


def capacity_figure(c: Comparison) -> Any:
    """Conversions captured by working the top N% of leads: first scorer, second, random order, best possible."""
    cap = c.capacity
    fig, ax = figure(size=(7, 4.5))
    x = cap["share_of_leads"] * 100
    ax.plot(x, cap["model"], label=c.names["model"], lw=2, color=COLOURS[0])
    ax.plot(x, cap["rules"], label=c.names["rules"], lw=2, color=COLOURS[1])
    ax.plot(x, cap["random"], label="random order", ls="--", color=GREY)
    ax.plot(x, cap["best_possible"], label="best possible", color="lightgrey", lw=1)
    ax.axvline(c.headline["capacity_share"] * 100, color="black", lw=0.8, ls=":")
    percent_axis(ax, "x", scale=100)
    thousands(ax)
    ax.set_xlabel("leads worked (highest score first)")
    ax.set_ylabel("conversions captured")
    ax.set_title("Capacity curve: conversions found by working the top N% of leads")
    ax.legend(loc="lower right")
    return fig


def lift_figure(c: Comparison) -> Any:
    """Lift by decile for both scorers."""
    fig, ax = figure(size=(7, 4))
    for i, who in enumerate(("model", "rules")):
        d = c.deciles[c.deciles["scorer"] == who]
        ax.bar(d["decile"] + (i - 0.5) * 0.4, d["lift"], width=0.4, label=c.names[who], color=COLOURS[i])
    ax.axhline(1, color=GREY, ls="--", lw=1)
    ax.set_xticks(range(1, 11))
    ax.set_xlabel("decile (1 = highest scores)")
    ax.set_ylabel("lift (conversion rate / overall)")
    ax.set_title("Lift by decile")
    ax.legend()
    return fig


def bands_figure(c: Comparison) -> Any:
    """Conversion rate per band, side by side for both scorers, with lead counts on the bars."""
    fig, axes = figure(1, 2, size=(10, 4), sharey=True)
    for ax, who, colour in zip(axes, ("model", "rules"), COLOURS, strict=False):
        d = c.bands[c.bands["scorer"] == who]
        bars = ax.bar(d["band"], d["conversion_rate"].fillna(0), color=colour)
        for bar, leads in zip(bars, d["leads"], strict=True):
            ax.annotate(f"{int(leads):,} leads", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
        ax.set_title(f"{c.names[who]} bands")
        percent_axis(ax)
        ax.set_ylabel("conversion rate")
    fig.suptitle("Conversion rate by band")
    return fig


def headline(c: Comparison) -> list[str]:
    """The 2-4 sentences a revenue leader repeats: the capacity gain, ranking quality, the scorecard's cost."""
    first, second = c.names["model"], c.names["rules"]
    m = c.metrics
    out = [c.headline_text.split(":")[0].rstrip(".") + "."]
    out.append(f"The {first} ranks leads with ROC AUC {fmt.probability(m['model']['roc_auc'])} (95% interval "
               f"{fmt.probability(m['model']['roc_auc_ci'][0])} to {fmt.probability(m['model']['roc_auc_ci'][1])}), "
               f"the {second} {fmt.probability(m['rules']['roc_auc'])} ({fmt.probability(m['rules']['roc_auc_ci'][0])}"
               f" to {fmt.probability(m['rules']['roc_auc_ci'][1])}); 0.5 would be a coin toss.")
    if c.scorecard:
        sc = c.scorecard
        lost = sc.get("model_minus_scorecard")
        lost_text = (f", {fmt.probability(lost)} below the {first}" if lost is not None and np.isfinite(lost)
                     else "")
        out.append(f"For teams that must keep points, a learned points table of {fmt.count(sc['n_rows'])} rows "
                   f"reaches ROC AUC {fmt.probability(sc['roc_auc'])}{lost_text} and "
                   f"{fmt.probability(sc['roc_auc'] - m['rules']['roc_auc'])} above the {second}.")
    out.append(f"Compared on {fmt.count(c.n_leads)} leads with {fmt.count(c.n_conversions)} conversions "
               f"({fmt.percent(c.n_conversions / c.n_leads)}); window: {c.window.get('kind', 'as given')}.")
    return out


def _ranking_table(c: Comparison) -> Any:
    cols = {c.names["model"]: c.metrics["model"], c.names["rules"]: c.metrics["rules"],
            f"{c.names['model']} - {c.names['rules']}": c.metrics["difference"]}

    def cell(_: str, key: str, values: Any) -> str:
        return values

    shown = {}
    for name, values in cols.items():
        shown[name] = {k: fmt.with_interval(k, values[k], *values[f"{k}_ci"]) for k in _RANKING}
    return html.metrics_table(shown, _RANKING, cells=cell)


def _deciles_wide(c: Comparison) -> pd.DataFrame:
    parts = []
    for who in ("model", "rules"):
        d = c.deciles[c.deciles["scorer"] == who].set_index("decile")
        name = c.names[who]
        parts.append(pd.DataFrame({f"{name}: conversions": d["conversions"], f"{name}: rate": d["conversion_rate"],
                                   f"{name}: lift": d["lift"]}))
    leads = c.deciles[c.deciles["scorer"] == "model"].set_index("decile")["leads"].rename("leads")
    return pd.concat([leads, *parts], axis=1).reset_index()


def _formats_by_suffix(frame: pd.DataFrame) -> dict[str, str]:
    out = {}
    for col in frame.columns:
        text = str(col)
        if text.endswith(": conversions"):
            out[col] = "count"
        elif text.endswith(": rate"):
            out[col] = "rate"
        elif text.endswith(": lift"):
            out[col] = "lift"
    return out


def _scorecard_section(c: Comparison) -> list[html.Section]:
    if not c.scorecard or c.scorecard_table is None:
        return []
    sc = c.scorecard
    low, high = sc["roc_auc_ci"]
    gap = sc.get("model_minus_scorecard")
    gap_low, gap_high = sc.get("model_minus_scorecard_ci") or (np.nan, np.nan)
    text = (f"A points table learned from the data ({sc['fitted_on']}): {fmt.count(sc['n_rows'])} rows over "
            f"{fmt.count(sc.get('n_features', 0))} inputs, points rising or falling in one direction along every "
            f"number. It ranks these leads with ROC AUC {fmt.probability(sc['roc_auc'])} "
            f"({fmt.probability(low)} to {fmt.probability(high)}), against "
            f"{fmt.probability(c.metrics['rules']['roc_auc'])} for the {c.names['rules']} and "
            f"{fmt.probability(c.metrics['model']['roc_auc'])} for the {c.names['model']}.")
    if gap is not None and np.isfinite(gap):
        text += (f" It gives up {fmt.probability(gap)} ROC AUC against the {c.names['model']} (95% interval "
                 f"{fmt.probability(gap_low)} to {fmt.probability(gap_high)}).")
    text += " Add the points of the one matching row per input to the base points; paste it from scorecard.csv."
    return [html.Section("Learned points scorecard", [html.table(c.scorecard_table, formats={"points": "signed_count"},
                                                                 headers={"bin": "when"})], intro=text)]


def render_html(c: Comparison) -> str:
    """The self-contained comparison page."""
    first, second = c.names["model"], c.names["rules"]
    cap_points = c.capacity[c.capacity["share_of_leads"].round(2).isin(CAPACITY_POINTS)]
    cap_points = cap_points.rename(columns={"model": f"found by the {first}", "rules": f"found by the {second}",
                                            "random": "found in random order", "best_possible": "best possible"})
    cap_formats = {col: "expected_count" for col in cap_points.columns if str(col).startswith("found") or
                   col == "best possible"}
    bands = c.bands.assign(scorer=c.bands["scorer"].map(c.names))
    agreement = c.agreement.copy()
    agreement.index = [f"{second}: {b}" for b in agreement.index]
    agreement.columns = [f"{first}: {b}" for b in agreement.columns]
    agreement = agreement.rename_axis("").reset_index()
    cut_cols = [col for col in ("team", "min_score", "capacity_per_week", "leads_per_week", "share_of_leads",
                                "expected_conversions_per_week", "expected_conversion_rate",
                                "observed_conversions_per_week", "observed_conversion_rate") if col in c.cutoffs]
    reasons = [col for col in c.disagreements.columns if str(col).startswith("reason_")]
    # Percentiles and the gap stay in disagreements.csv; the page keeps what fits beside the reasons.
    dis_cols = [col for col in (c.disagreements.columns[0], "label", "model_probability", "model_band",
                                "rule_score", "rule_band", "higher") if col in c.disagreements.columns] + reasons
    disagreements = c.disagreements[dis_cols].assign(
        higher=c.disagreements["higher"].map(c.names), label=c.disagreements["label"].map({1: "yes", 0: "no"}))
    if reasons:  # one wrapping column instead of three narrow ones
        joined = c.disagreements[reasons].astype("string").fillna("").agg("; ".join, axis=1).str.strip("; ")
        disagreements = disagreements.drop(columns=reasons).assign(reasons=joined)
    dis_headers = {"model_probability": f"{first} probability", "model_band": f"{first} band",
                   "model_percentile": f"{first} percentile", "rule_score": f"{second} score",
                   "rule_band": f"{second} band", "rule_percentile": f"{second} percentile",
                   "reasons": f"{first}'s top reasons"}
    sections = [
        html.Section("Ranking quality", [_ranking_table(c)],
                     intro="95% intervals from paired bootstrap resamples of the compared leads."),
        html.Section("Capacity curve", [html.figure(base64_png(capacity_figure(c)), "capacity curve"),
                                        html.table(cap_points, formats=cap_formats)],
                     intro=f"Conversions found when sales works the top share of leads by each score. "
                           f"{c.headline_text}"),
        html.Section("Lift by decile", [html.figure(base64_png(lift_figure(c)), "lift by decile"),
                                        html.table(_deciles_wide(c), formats=_formats_by_suffix(_deciles_wide(c)))]),
        html.Section("Conversion by band", [html.figure(base64_png(bands_figure(c)), "conversion by band"),
                                            html.table(bands, headers={"scorer": "score"})]),
        html.Section("Agreement", [html.table(agreement, formats={col: "count" for col in agreement.columns[1:]})],
                     intro=f"Leads by {second} band (rows) and {first} band (columns)."),
        *_scorecard_section(c),
        html.Section("Recommended cut-offs from capacity", [html.table(c.cutoffs[cut_cols])],
                     intro=f"The {first}'s score cut-offs that fill sales and telemarketing capacity; expected "
                           f"conversions add up the {first}'s probabilities."),
        html.Section(f"Largest disagreements (top {len(c.disagreements)} by percentile gap)",
                     [html.table(disagreements, headers=dis_headers, text_columns=("reasons",))],
                     intro=f"Leads one score puts near the top and the other near the bottom, with the {first}'s "
                           f"reasons."),
        html.Section("Notes", [html.bullets(list(c.notes))]),
    ]
    return html.page(f"Lead score: {first} vs {second}", sections, summary=headline(c))


def write_comparison_report(comparison: Comparison, directory: str | os.PathLike) -> dict[str, Path]:
    """Write report.html (figures embedded), CSV tables and comparison.json into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    c = comparison
    return {
        "html": write_text(render_html(c), directory / "report.html"),
        "json": write_text(json.dumps(c.summary(), indent=2, sort_keys=True), directory / "comparison.json"),
        "deciles": write_table(c.deciles, directory / "deciles.csv"),
        "capacity": write_table(c.capacity, directory / "capacity_curve.csv"),
        "bands": write_table(c.bands, directory / "bands.csv"),
        "agreement": write_table(c.agreement.reset_index(), directory / "agreement.csv"),
        "disagreements": write_table(c.disagreements, directory / "disagreements.csv"),
        "cutoffs": write_table(c.cutoffs, directory / "cutoffs.csv"),
        **({"scorecard": write_table(c.scorecard_table, directory / "scorecard.csv")}
           if c.scorecard_table is not None else {}),
    }
