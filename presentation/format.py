"""One formatting convention for every report, table and sentence the product shows.

Counts are integers with thousands separators (`1,234`), rates are percentages (`12.1%`), probabilities have 3
decimals (`0.913`), errors on the probability scale 4 (`0.0165`: they are read against a noise level in the
third decimal), days and hours 1 decimal, lifts 2, money whole units with separators. Every metric has a
plain-language label and a one-line meaning (`METRICS`); table columns get readable headers (`label`), so a
raw key such as `ece_noise_p95` never reaches a page.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MISSING_TEXT = "n/a"


@dataclass(frozen=True)
class Metric:
    """How a metric is named and read: a label, a one-line meaning and a number kind (see `format_number`)."""

    label: str
    meaning: str
    kind: str


METRICS: dict[str, Metric] = {
    "roc_auc": Metric("Ranking quality (ROC AUC)", "Chance that a converting lead is scored above a non-converting "
                      "one: 0.5 is a coin toss, 1 is perfect.", "probability"),
    "pr_auc": Metric("Precision-recall AUC", "Average conversion rate of the leads worked, going down the list from "
                     "the top; compare it with the overall rate.", "probability"),
    "brier": Metric("Brier score", "Mean squared gap between probability and outcome; lower is better.", "error"),
    "log_loss": Metric("Log loss", "Penalty for confident wrong probabilities; lower is better.", "error"),
    "ece": Metric("Calibration error (ECE)", "Average gap between predicted and observed conversion rates over 15 "
                  "probability bins; lower is better.", "error"),
    "ece_noise_p95": Metric("Calibration noise level", "The calibration error a perfectly calibrated model would "
                            "still show on this many leads (95th percentile); below it means within noise.",
                            "error"),
    "ece_noise_floor": Metric("Calibration noise (mean)", "The calibration error a perfectly calibrated model shows "
                              "on average on this many leads.", "error"),
    "calibration_in_the_large": Metric("Overall level error", "Mean probability minus the observed conversion "
                                       "rate; 0 means the overall level is right.", "signed_error"),
    "lift_top_decile": Metric("Lift in the top 10%", "Conversion rate of the top-scored 10% of leads divided by the "
                              "overall rate.", "lift"),
    "mae_vs_truth": Metric("Error against the true probability", "Mean absolute gap to the true conversion "
                           "probability (known only for the demo world).", "error"),
    "positive_rate": Metric("Conversion rate", "Share of leads that converted.", "rate"),
    "mean_probability": Metric("Mean predicted probability", "Average probability given to the leads.", "rate"),
    "n": Metric("Leads", "Number of leads.", "count"),
}

# Short headers for metrics in table columns (the full label and meaning go in the header's tooltip).
SHORT: dict[str, str] = {
    "roc_auc": "ROC AUC", "pr_auc": "PR AUC", "brier": "Brier", "log_loss": "log loss", "ece": "calibration error",
    "ece_noise_p95": "calibration noise level", "ece_noise_floor": "calibration noise (mean)",
    "calibration_in_the_large": "level error", "lift_top_decile": "top-10% lift", "mae_vs_truth": "error vs truth",
    "positive_rate": "conversion rate", "mean_probability": "mean probability", "n": "leads",
}

# Readable headers for table columns (metrics take their label from METRICS).
COLUMNS: dict[str, str] = {
    "n": "leads", "positives": "conversions", "rate": "conversion rate", "share": "share of leads",
    "expected": "expected conversions", "observed": "observed conversions", "expected_rate": "expected rate",
    "observed_rate": "observed rate", "scores": "score range", "n_train": "training leads",
    "n_calibration": "calibration leads", "n_trees": "trees", "as_of_from": "as_of from", "as_of_to": "as_of to",
    "cv_log_loss": "cross-validated log loss", "cv_roc_auc": "cross-validated ROC AUC",
    "share_of_leads": "share of leads", "leads_worked": "leads worked", "best_possible": "best possible",
    "conversion_rate": "conversion rate", "share_of_conversions": "share of conversions",
    "cumulative_conversions": "conversions so far", "cumulative_share_of_conversions": "share of conversions so far",
    "min_score": "lowest score", "max_score": "highest score", "capacity_per_week": "capacity a week",
    "leads_per_week": "leads a week", "expected_conversions": "expected conversions",
    "expected_conversions_per_week": "expected conversions a week", "expected_conversion_rate": "expected rate",
    "observed_conversions": "observed conversions", "observed_conversions_per_week": "observed conversions a week",
    "observed_conversion_rate": "observed rate", "model_probability": "model probability",
    "model_score": "model score", "model_band": "model band", "model_percentile": "model percentile",
    "rule_score": "rule score", "rule_band": "rule band", "rule_percentile": "rule percentile",
    "percentile_gap": "percentile gap", "higher": "ranks it higher", "label": "converted",
    "ci_low": "95% interval from", "ci_high": "to", "median_days_to_convert": "median days to convert",
    "missing_rate": "missing", "auc_alone": "ROC AUC alone", "auc_non_null": "ROC AUC of filled-in",
    "win_rate": "win rate", "win_ci_low": "win rate from", "win_ci_high": "to", "lead_to_won": "lead -> won",
    "lead_to_won_ci_low": "lead -> won from", "lead_to_won_ci_high": "to",
    "median_days_to_close": "median days to close", "rate_from_previous": "share of previous stage",
    "share_within": "share within the SLA",
}

_COUNT_NAMES = {"n", "leads", "conversions", "positives", "converted", "opportunities", "won", "lost", "deals",
                "deals_needed", "leads_needed", "breaching", "handed_over", "touched", "within", "distinct", "base",
                "leads_worked", "n_train", "n_calibration", "n_trees", "fold", "decile", "compared", "points",
                "rows", "stalled_leads", "deals_won", "sql", "srl", "mql"}
_RATE_WORDS = ("rate", "share", "_pct", "win_", "lead_to_")


def label(name: str, *, short: bool = False) -> str:
    """A plain-language header for a metric or column key ("ece_noise_p95" -> "Calibration noise level").

    `short`: the compact form for a table column ("calibration noise level")."""
    key = str(name)
    if short and key in SHORT:
        return SHORT[key]
    if key in COLUMNS:
        return COLUMNS[key]
    if key in METRICS:
        return METRICS[key].label
    text = key.replace("_", " ").strip()
    return re.sub(r"\bpct\b", "%", text)


def meaning(name: str) -> str:
    """The one-line meaning of a metric (empty when the key is not a metric)."""
    metric = METRICS.get(str(name))
    return metric.meaning if metric else ""


def kind_of(name: str) -> str:
    """The number kind a column holds, by its name: count, rate, probability, error, days, hours, money, lift...

    Expected conversions and anything per week are averages, so they keep one decimal ("decimal1")."""
    key = str(name).lower()
    if key in METRICS:
        return METRICS[key].kind
    if "per_week" in key or (key.startswith("expected") and "rate" not in key) or key in ("observed",
                                                                                        "observed_conversions"):
        return "decimal1"
    if key in ("ci_low", "ci_high") or key.startswith(("share", "rate")) or key.endswith(("_rate", "_share")):
        return "rate"
    if key in _COUNT_NAMES or key.endswith(("_leads", "_conversions", "_count", "_needed", "_deals")) \
            or key.startswith(("n_", "leads_", "conversions_")) and not key.endswith("_rate"):
        return "count"
    if "days" in key:
        return "days"
    if "hours" in key:
        return "hours"
    if "percentile" in key:
        return "percentile"
    if "lift" in key:
        return "lift"
    if "probability" in key or key in ("base_rate",):
        return "probability"
    if any(word in key for word in _RATE_WORDS) or key.startswith("rate"):
        return "rate"
    if "value" in key or "revenue" in key:
        return "money"
    if "score" in key:
        return "score"
    if "auc" in key:
        return "probability"
    return "number"


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and not math.isfinite(float(value))


def format_number(kind: str, value: Any) -> str:
    """One number as text in its kind's convention (missing and infinite values read "n/a")."""
    if _missing(value):
        return MISSING_TEXT
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    v = float(value)
    if kind == "count":
        return f"{int(round(v)):,}"
    if kind == "rate":
        return f"{v:.1%}"
    if kind == "probability":
        return f"{v:.3f}"
    if kind == "error":
        return f"{v:.4f}"
    if kind == "signed_error":
        return f"{v:+.4f}"
    if kind in ("days", "hours", "percentile", "decimal1"):
        return f"{v:,.1f}"
    if kind == "lift":
        return f"{v:.2f}"
    if kind == "money":
        return f"{v:,.0f}"
    if kind == "signed_count":
        return f"{int(round(v)):+,}"
    if kind in ("score", "expected_count"):  # an expected count (ties shared out) is whole only when it is
        return f"{v:,.0f}" if v == round(v) else f"{v:,.1f}"
    # A plain number: whole values read as counts (never "133.000"), others with 3 significant decimals.
    if v == round(v) and abs(v) < 1e15:
        return f"{int(round(v)):,}"
    return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"


def format_value(name: str, value: Any) -> str:
    """A cell of column (or metric) `name` as text: dates as days, text as is, numbers by the column's kind."""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, pd.Period):
        return str(value)
    if isinstance(value, str):
        return value
    if _missing(value):
        return MISSING_TEXT
    if isinstance(value, int | float | np.integer | np.floating | bool | np.bool_):
        return format_number(kind_of(name), value)
    return str(value)


def count(value: Any) -> str:
    """1,234."""
    return format_number("count", value)


def percent(value: Any) -> str:
    """12.1%."""
    return format_number("rate", value)


def probability(value: Any) -> str:
    """0.913."""
    return format_number("probability", value)


def days(value: Any) -> str:
    """43.7."""
    return format_number("days", value)


def money(value: Any) -> str:
    """12,500."""
    return format_number("money", value)


def metric(name: str, value: Any) -> str:
    """A metric's value in its own convention."""
    return format_number(kind_of(name), value)


def points(value: Any) -> str:
    """A gap between two rates in percentage points: 0.0165 -> "1.7 points"."""
    return MISSING_TEXT if _missing(value) else f"{float(value) * 100:.1f} points"


def with_interval(name: str, point: Any, low: Any, high: Any) -> str:
    """"0.913 (95% interval 0.899 to 0.927)" in the metric's convention."""
    if _missing(low) or _missing(high):
        return metric(name, point)
    return f"{metric(name, point)} ({metric(name, low)} to {metric(name, high)})"
