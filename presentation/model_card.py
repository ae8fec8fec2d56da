"""Model card (Markdown): data, label, exclusions, checks, test metrics with bootstrap CIs, bands, segments, limits.

Numbers follow `presentation.format`; the intervals are `models.metrics.bootstrap_metrics`, the same the
training verdict and every comparison of this model on these leads show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from leadscore.models.metrics import BOOTSTRAP_DRAWS, PROBABILITY_METRICS, bootstrap_metrics
from leadscore.presentation import format as fmt
from leadscore.training.backtest import MIN_CLASS_CASES
from leadscore.training.evaluate import band_table, baseline_probabilities, slice_table
from leadscore.training.report import REPORT_MAX_FIT_ROWS

if TYPE_CHECKING:
    from leadscore.training.train import TrainResult

# Segments (and backtest folds) ranking worse than this are called out as weak in the card.
WEAK_AUC = 0.6
CI_METRICS = PROBABILITY_METRICS


def format_metric(name: str, value: Any) -> str:
    """A metric (or count) as the report writes it: `presentation.format`'s convention for its kind."""
    return fmt.metric(name, value)


def _day(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, formats: dict[str, Any] | None = None) -> str:
    """A GitHub-style Markdown table with readable headers; `formats` maps a column to a callable or a number kind.

    Other cells follow `presentation.format` by column name (counts with separators, rates as percentages).
    """
    formats = formats or {}
    if frame.empty:
        return "(none)\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(_cell(fmt.label(c, short=True)) for c in cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        cells = []
        for col, value in zip(cols, row, strict=True):
            how = formats.get(col)
            if callable(how):
                cells.append(_cell(how(value)))
            elif isinstance(how, str):
                cells.append(_cell(fmt.format_number(fmt.kind_of(how) if how in fmt.METRICS else how, value)))
            else:
                cells.append(_cell(fmt.format_value(str(col), value)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pct(value: Any) -> str:
    return fmt.percent(value)


# --- the card --------------------------------------------------------------------------------------------------


def _label_definition(result: TrainResult) -> list[str]:
    spec, data = result.bundle.spec, result.config.data
    counts = result.counts
    if data.label:
        when = (f"as_of = `{spec.created_column}` + {spec.as_of_days} days" if _has_dates(result)
                else "no creation time, so no as_of: features are the lead's attributes as exported")
        return [f"- Label: the 0/1 column `{data.label}` as given in the export (no label window is applied); "
                f"{when}."]
    lines = [
        f"- as_of rule: as_of = `{spec.created_column}` + {spec.as_of_days} days; features use only leads' "
        f"attributes and events up to as_of.",
        f"- Label window: label = 1 when the lead converted within {spec.label_window_days} days after as_of "
        f"(converted in (as_of, as_of + {spec.label_window_days} days]), else 0.",
    ]
    left_out = [(k, counts.get(k)) for k in ("converted_before_as_of", "immature") if counts.get(k)]
    if left_out:
        why = {"converted_before_as_of": "already converted at as_of",
               "immature": "label window not closed by the end of the data"}
        lines.append("- Left out: " + "; ".join(f"{int(v):,} leads {why[k]}" for k, v in left_out) + ".")
    return lines


def _calibration_lines(result: TrainResult) -> list[str]:
    cal = result.bundle.calibrator
    meta = result.bundle.meta.get("calibration", {}) if isinstance(result.bundle.meta, dict) else {}
    method = getattr(cal, "method", meta.get("method", "unknown"))
    where = meta.get("fitted_on", "calibration slice")
    if method == "none":
        lines = [f"- Method: **none**: probability = logistic of the {result.bundle.learner} margin, unchanged "
                 f"(chosen on the {where})."]
    elif where == "out-of-fold margins":
        lines = [f"- Method: **{method}**, fitted on the out-of-fold margins of the training leads (each margin "
                 f"from a fold model that did not see the lead; the test slice is never used)."]
    else:
        lines = [f"- Method: **{method}**, fitted on the margin of the calibration slice (disjoint from "
                 f"training and test)."]
    if method != "none" and hasattr(cal, "a_") and hasattr(cal, "b_"):
        lines.append(f"- Coefficients: calibrated logit = {cal.a_:.4f} x margin {cal.b_:+.4f}.")
    elif hasattr(cal, "x_"):
        lines.append(f"- Isotonic map with {len(cal.x_)} thresholds over margins {float(np.min(cal.x_)):.3f} to "
                     f"{float(np.max(cal.x_)):.3f}.")
    cv = meta.get("cv_log_loss") or result.params.get("calibration_cv_log_loss")
    if cv:
        lines.append(f"- Chosen by cross-validated log loss on the {where}: " +
                     ", ".join(f"{k} {v:.4f}" for k, v in cv.items()) + ".")
    raw, calibrated = result.metrics.get("model_uncalibrated"), result.metrics.get("model")
    if raw and calibrated:
        lines.append("- Test slice before -> after calibration: " + "; ".join(
            f"{fmt.label(m, short=True)} {format_metric(m, raw[m])} -> {format_metric(m, calibrated[m])}"
            for m in ("log_loss", "brier", "ece", "calibration_in_the_large") if m in raw and m in calibrated) + ".")
    return lines


def _ci_table(ci: pd.DataFrame, names: Sequence[str]) -> str:
    rows = []
    for metric in CI_METRICS:
        row = {"metric": fmt.label(metric)}
        for name in names:
            hit = ci[(ci["model"] == name) & (ci["metric"] == metric)]
            if hit.empty:
                row[name] = "n/a"
                continue
            r = hit.iloc[0]
            row[name] = (f"{format_metric(metric, r['point'])} "
                         f"[{format_metric(metric, r['low'])}, {format_metric(metric, r['high'])}]")
        rows.append(row)
    return markdown_table(pd.DataFrame(rows))


def model_card(result: TrainResult, *, version: str | None = None, segments: pd.DataFrame | None = None,
               backtest: pd.DataFrame | None = None, n_boot: int = BOOTSTRAP_DRAWS, seed: int | None = None,
               learning: pd.DataFrame | None = None, intervals: pd.DataFrame | None = None) -> str:
    """The model card as Markdown: what the model is, what it learned from, how well it does, where not to use it.

    `intervals`: `bootstrap_metrics` of model and baseline, already computed (the report passes its own); else
    computed here with `n_boot` resamples and `seed` (default: the run's seed, as the training verdict uses).
    """
    spec, bundle = result.bundle.spec, result.bundle
    window = bundle.meta.get("training_window", {}) if isinstance(bundle.meta, dict) else {}
    test = result.test_frame
    y = test.y
    p_model = result.test_scores["probability"].to_numpy(dtype="float64")
    p_base = baseline_probabilities(result)
    out: list[str] = [f"# Model card: lead conversion model{f' {version}' if version else ''}", ""]

    n_event = len(spec.event_feature_names)
    trees = f", {bundle.booster.num_trees()} trees" if bundle.booster is not None else ""
    out += ["## Model", "",
            f"- Calibrated {bundle.learner}{trees} on {len(spec.feature_names)} features "
            f"({len(spec.numeric_columns)} numeric, {len(spec.categorical_columns)} categorical, {n_event} from "
            f"events); compared with a logistic-regression baseline on the same features.",
            f"- Output: probability of converting, a 0-100 score (probability in points) and a band "
            f"({' / '.join(bundle.bands.names)}).", ""]
    label = bundle.meta.get("label") if isinstance(bundle.meta, dict) else None
    if label:
        out.insert(len(out) - 1, f"- Outcome mapping: {label['text']}.")
    if result.candidates is not None:
        cross = result.params.get("cross_fit", {})
        choice = result.params.get("choice")
        out += [f"Learner chosen by {cross.get('folds')}-fold cross-fitting ({cross.get('kind')}) on every non-test "
                f"lead: the lowest cross-validated log loss after calibration, unless a simpler learner is within "
                f"one standard error of it or ranks the leads at least as well (cross-validated ROC AUC); then "
                f"refitted on all of them." + (f" Chosen: {choice}." if choice else ""), "",
                markdown_table(result.candidates[["candidate", "cv_log_loss", "cv_roc_auc", "calibration",
                                                  "chosen"]],
                               {"cv_log_loss": "error", "cv_roc_auc": "probability"}), ""]

    out += ["## Training window", ""]
    if window.get("train_as_of_min"):
        cal = (f"calibration leads: as_of from {_day(window['calibration_start'])}; "
               if window.get("calibration_start") else "cross-fitted (no calibration slice); ")
        out += [f"- Split: {window.get('split')} (training < test by as_of).",
                f"- Training leads: as_of {_day(window['train_as_of_min'])} to {_day(window['train_as_of_max'])}.",
                f"- {cal[0].upper() + cal[1:]}test leads: as_of "
                f"{_day(window['test_start'])} to {_day(window['test_as_of_max'])}.",
                f"- Data end (last date seen in the export): {_day(window.get('data_end')) or 'n/a'}.", ""]
    else:
        out += [f"- Split: {window.get('split', result.split.method)}: no creation dates, so no time window.", ""]

    out += ["## Label", "", *_label_definition(result), ""]

    out += ["## Data", "", markdown_table(slice_table(result), {"n": "n", "positives": "n", "rate": _pct}), ""]

    dropped = pd.DataFrame(sorted(spec.dropped_columns.items()), columns=["column", "reason"])
    out += ["## Excluded and dropped columns", "",
            "Columns of the lead table that are not features, and why (config exclusions and automatic drops):", "",
            markdown_table(dropped), ""]

    problems = list(result.checks.problems) if result.checks is not None else []
    serious = [p for p in problems if p.get("severity") in ("fatal", "warning")]
    notes = [p for p in problems if p.get("severity") not in ("fatal", "warning")]
    out += ["## Data check findings", ""]
    if result.checks is None:
        out += ["Data checks were not recorded for this run.", ""]
    elif serious:
        table = pd.DataFrame(serious)[["severity", "check", "column", "message"]]
        out += [markdown_table(table), ""]
    else:
        out += ["No warnings or fatal findings.", ""]
    if notes:
        out += ["Notes:", "", *[f"- {p['message']}" for p in notes], ""]

    names = {"model": f"{bundle.learner} (calibrated)", "baseline": "logistic baseline"}
    if intervals is None:
        seed = result.config.seed if seed is None else seed
        ci = bootstrap_metrics(y, {names["model"]: p_model, names["baseline"]: p_base}, n_boot=n_boot, seed=seed)
    else:  # computed by the caller under its own names: model first, baseline second
        given = list(dict.fromkeys(intervals.loc[~intervals["model"].str.contains(" - "), "model"]))
        rename = {given[0]: names["model"], given[1]: names["baseline"],
                  f"{given[0]} - {given[1]}": f"{names['model']} - {names['baseline']}"}
        ci = intervals.assign(model=intervals["model"].map(lambda v: rename.get(v, v)))
    diff_name = f"{names['model']} - {names['baseline']}"
    diff = ci[(ci["model"] == diff_name) & (ci["metric"] == "roc_auc")]
    m = result.metrics.get("model", {})
    out += ["## Test metrics", "",
            f"On the held-out test slice ({len(y):,} leads, {int(y.sum()):,} conversions). Brackets: 95% bootstrap "
            f"interval ({n_boot} paired resamples of the test leads, percentile interval corrected for the "
            f"bootstrap bias).", "",
            _ci_table(ci, [names["model"], names["baseline"]]), ""]
    if not diff.empty:
        d = diff.iloc[0]
        out += [f"- ROC AUC difference (model - baseline): {d['point']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}].", ]
    if "ece_noise_p95" in m:
        out += [f"- ECE noise level: a perfectly calibrated model would show an ECE up to "
                f"{format_metric('ece', m['ece_noise_p95'])} (95th percentile) on this many leads."]
    if "lift_top_decile" in m:
        out += [f"- Top-decile lift: {format_metric('lift_top_decile', m['lift_top_decile'])} (baseline "
                f"{format_metric('lift_top_decile', result.metrics.get('baseline', {}).get('lift_top_decile'))})."]
    out += [""]

    out += ["## Calibration", "", *_calibration_lines(result), ""]

    bands = band_table(p_model, y, bundle.bands)
    out += ["## Score bands", "",
            f"Cut-offs (lowest score of each band after the first): "
            f"{', '.join(f'{n} >= {c}' for n, c in zip(bundle.bands.names[1:], bundle.bands.cutoffs, strict=True))}."
            f" Expected conversions are the sum of the calibrated probabilities; observed are the test outcomes.", "",
            markdown_table(bands, {"n": "n", "share": _pct, "expected": "decimal1",
                                   "observed": "count", "expected_rate": _pct,
                                   "observed_rate": _pct}), ""]

    out += ["## Segments", ""]
    if segments is None or segments.empty:
        out += ["Not computed.", ""]
    else:
        out += [f"Test slice by segment; ROC AUC only where a segment has at least {MIN_CLASS_CASES} conversions "
                f"and {MIN_CLASS_CASES} non-conversions. Weakest segments first within each column.", "",
                markdown_table(segments, {"n": "n", "positives": "n", "rate": _pct, "mean_probability": _pct,
                                          "roc_auc": "roc_auc",
                                          "calibration_in_the_large": "calibration_in_the_large"}), ""]

    out += ["## Backtest", ""]
    if backtest is None or backtest.empty:
        out += ["Not run (needs creation dates and enough months).", ""]
    else:
        shown = backtest[["test_period", "calibration_period", "calibration", "train_end", "n_train", "n", "positives",
                          "roc_auc", "ece", "calibration_in_the_large", "brier"]].copy()
        shown["train_end"] = shown["train_end"].map(_day)
        auc = backtest["roc_auc"].dropna()
        capped = (f" (its latest {REPORT_MAX_FIT_ROWS:,} leads where there are more)"
                  if (backtest["n_train"] >= REPORT_MAX_FIT_ROWS).any() else "")
        learner = {"lightgbm": "LightGBM (its parameters and tree count)",
                   "logistic": "logistic model (its L2 strength and terms)",
                   "blend": "blend (its LightGBM and logistic model at the run's weight)"
                   }.get(getattr(bundle.model, "kind", "lightgbm"), "learner")
        out += [f"Rolling origin by month of as_of: each fold fits the run's own {learner} "
                f"on every earlier month except the last{capped}, calibrates on that last month and tests on "
                "the next one; a month with under a third of the median month's leads (cut short where the data "
                "ends) is not tested.", "",
                markdown_table(shown, {"n_train": "n", "n": "n", "positives": "n", "roc_auc": "roc_auc",
                                       "ece": "ece", "calibration_in_the_large": "calibration_in_the_large",
                                       "brier": "brier"}), ""]
        if len(auc):
            out += [f"- ROC AUC over {len(auc)} folds: {auc.min():.3f} to {auc.max():.3f} (mean {auc.mean():.3f}).",
                    ""]

    if learning is not None and not learning.empty:
        has_trees = bool(learning["n_trees"].notna().any())
        columns = {"fraction": _pct, "n_train": "n", "positives": "n", "n_trees": "n", "roc_auc": "roc_auc",
                   "log_loss": "log_loss"}
        if not has_trees:
            columns.pop("n_trees")
        out += ["## Learning curve", "",
                "Test metrics when fitting the run's learner on the most recent share of the training slice ("
                + ("fixed tree count, " if has_trees else "")
                + "same calibration slice)"
                + (f"; above {REPORT_MAX_FIT_ROWS:,} leads only the full slice is shown, and it is the run's own "
                   "model" if (learning["n_train"] > REPORT_MAX_FIT_ROWS).any() else "") + ":", "",
                markdown_table(learning if has_trees else learning.drop(columns="n_trees"), columns), ""]

    out += ["## Intended use and limits", "", *_limits(result, segments, backtest), ""]
    return "\n".join(out)


def _limits(result: TrainResult, segments: pd.DataFrame | None, backtest: pd.DataFrame | None) -> list[str]:
    spec = result.bundle.spec
    window = result.bundle.meta.get("training_window", {}) if isinstance(result.bundle.meta, dict) else {}
    lines = []
    if not _has_dates(result):
        return [
            f"- Scores leads from their attributes as exported: the probability that the "
            f"`{result.config.data.label or 'label'}` outcome is 1. There are no creation dates, so nothing "
            f"guarantees the attributes were known before the outcome: check every feature is filled in before a "
            f"lead is scored.",
            "- The split was random, not by time: the test metrics do not show how the model holds up on later "
            "leads, and no backtest was possible.",
            *_segment_limits(segments),
            "- Probabilities hold for the lead mix seen in training; a change in sources or campaigns shifts the base "
            "rate. The score ranks and estimates; it is not a decision on its own.",
        ]
    if result.config.data.label:
        lines.append(f"- Scores leads as of `{spec.created_column}` + {spec.as_of_days} days: the probability that "
                     f"the `{result.config.data.label}` outcome is 1.")
    else:
        lines.append(f"- Scores leads as of `{spec.created_column}` + {spec.as_of_days} days: the probability of "
                     f"converting within the following {spec.label_window_days} days.")
    lines.append(f"- Every training lead was seen exactly {spec.as_of_days} days after creation. Not for leads "
                 f"already older than that when scored: an older lead has had more time to act (and to convert), "
                 f"so its probability is not comparable; score each lead once at created + {spec.as_of_days} days, "
                 f"or check calibration on older leads first. Not for leads that already converted.")
    if window.get("train_as_of_min"):
        lines.append(f"- Learned from leads with as_of {_day(window['train_as_of_min'])} to "
                     f"{_day(window['train_as_of_max'])}; measured on leads up to {_day(window['test_as_of_max'])}. "
                     f"Re-check calibration (expected vs observed per band) on each month of new outcomes.")
    lines.append("- Category values never (or rarely) seen in training are treated as missing; a new lead source "
                 "or market is scored as if its value were unknown.")
    lines += _segment_limits(segments)
    if backtest is not None and not backtest.empty:
        weak_folds = backtest[backtest["roc_auc"] < WEAK_AUC]
        if not weak_folds.empty:
            lines.append("- Backtest months with ROC AUC < 0.6: " + ", ".join(weak_folds["test_period"]) + ".")
        lines.append("- Backtest caveat: the labels of the last training months close after the fold's test month "
                     "starts (as in the main time split), so a fold uses outcomes that were not yet known on its "
                     "first day.")
    lines.append("- Probabilities hold for the lead mix seen in training; a change in sources or campaigns shifts "
                 "the base rate. The score ranks and estimates; it is not a decision on its own.")
    return lines


def _has_dates(result: TrainResult) -> bool:
    return bool(result.frame.as_of.notna().any())


def _segment_limits(segments: pd.DataFrame | None) -> list[str]:
    lines: list[str] = []
    if segments is None or segments.empty:
        return lines
    weak = segments[segments["roc_auc"] < WEAK_AUC]
    unranked = segments[segments["roc_auc"].isna()]
    if weak.empty:
        lines.append(f"- No segment ranks worse than ROC AUC {WEAK_AUC} on the test slice.")
    else:
        lines.append(f"- Segments with ROC AUC < {WEAK_AUC} (ranking within them is weak): " + ", ".join(
            f"{r.column} = {r.segment} ({r.roc_auc:.3f}, {int(r.n):,} leads)" for r in weak.itertuples()) + ".")
    if not unranked.empty:
        lines.append("- Too few conversions or non-conversions to judge ranking: " + ", ".join(
            f"{r.column} = {r.segment} ({int(r.n):,} leads, {int(r.positives)} conversions)"
            for r in unranked.itertuples()) + ".")
    return lines
