"""Model versus manual rules on the same leads: AUCs with paired bootstrap CIs, deciles, capacity, bands, report.

`compare_scores` is pure (already-scored frames and labels in, a `Comparison` out); `compare_model_and_rules`
builds the labels the model's way, keeps the model's test window, scores the same leads with both scorers at
each lead's as_of and calls it; `write_comparison_report` writes a self-contained HTML report, CSV tables and
`comparison.json`.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.features.errors import DataError
from leadscore.features.io import parse_timestamps, require_columns, write_table, write_text
from leadscore.features.spec import AS_OF, LABEL

DEFAULT_CAPACITY_SHARE = 0.10
DEFAULT_SALES_SHARE = 0.10
DEFAULT_TELEMARKETING_SHARE = 0.20
N_DISAGREEMENTS = 20
TIE_NOTE = ("Deciles rank leads by their own score; ties (common in rule scores) are broken at random with a "
            "fixed seed. The capacity curve and the headline use the expected count over that random choice "
            "(equally scored leads at the cut are taken in proportion).")


# ----------------------------------------------------------------------------------------------- result


@dataclass(frozen=True)
class Comparison:
    """Everything a model-versus-rules comparison found (tables are DataFrames; `summary()` is JSON-safe)."""

    n_leads: int
    n_conversions: int
    counts: dict[str, int]
    metrics: dict[str, dict[str, Any]]
    deciles: pd.DataFrame
    capacity: pd.DataFrame
    headline: dict[str, Any]
    bands: pd.DataFrame
    agreement: pd.DataFrame
    disagreements: pd.DataFrame
    cutoffs: pd.DataFrame
    window: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    seed: int = 0
    n_boot: int = 0
    # The learned points scorecard on the same leads: AUC with CI, how it was fitted, and its points table.
    scorecard: dict[str, Any] | None = None
    scorecard_table: pd.DataFrame | None = None

    @property
    def headline_text(self) -> str:
        """The one sentence a sales lead reads: extra conversions found at the given capacity."""
        return str(self.headline["text"])

    def summary(self) -> dict[str, Any]:
        """Headline numbers as plain JSON values (what `comparison.json` holds)."""
        return _jsonable({
            "n_leads": self.n_leads, "n_conversions": self.n_conversions, "counts": self.counts,
            "window": self.window, "metrics": self.metrics, "headline": self.headline,
            "bands": self.bands.to_dict(orient="records"), "cutoffs": self.cutoffs.to_dict(orient="records"),
            "notes": list(self.notes), "bootstrap": {"n_boot": self.n_boot, "seed": self.seed},
            "scorecard": self.scorecard,
        })

    def flat_metrics(self) -> dict[str, float]:
        """Headline numbers as flat name -> float (for MLflow metrics)."""
        out: dict[str, float] = {"n_leads": float(self.n_leads), "n_conversions": float(self.n_conversions)}
        for who, values in self.metrics.items():
            for key, value in values.items():
                if isinstance(value, list | tuple):
                    out[f"{who}_{key}_low"], out[f"{who}_{key}_high"] = float(value[0]), float(value[1])
                elif isinstance(value, int | float):
                    out[f"{who}_{key}"] = float(value)
        if self.scorecard:
            out["scorecard_roc_auc"] = float(self.scorecard["roc_auc"])
        for key in ("capacity_leads", "model_conversions", "rules_conversions", "random_conversions",
                    "extra_conversions", "extra_percent"):
            value = self.headline.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                out[f"headline_{key}"] = float(value)
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    return value


# ----------------------------------------------------------------------------------------------- metrics


def _tie_groups(score: np.ndarray) -> tuple[np.ndarray, int]:
    """Group index per lead in ascending score order (equal scores share a group)."""
    uniq, inverse = np.unique(score, return_inverse=True)
    return inverse, len(uniq)


def _auc_ap(inverse: np.ndarray, n_groups: int, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted ROC AUC (ties count half) and average precision, as scikit-learn computes them."""
    pos = np.bincount(inverse, weights=w * y, minlength=n_groups)
    neg = np.bincount(inverse, weights=w * (1 - y), minlength=n_groups)
    p_total, n_total = pos.sum(), neg.sum()
    if p_total <= 0 or n_total <= 0:
        return float("nan"), float("nan")
    neg_below = np.cumsum(neg) - neg
    auc = float((pos * (neg_below + 0.5 * neg)).sum() / (p_total * n_total))
    pos_d, neg_d = pos[::-1], neg[::-1]
    tp, fp = np.cumsum(pos_d), np.cumsum(neg_d)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    ap = float((pos_d * precision).sum() / p_total)
    return auc, ap


def _ci(values: np.ndarray) -> list[float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return [float("nan"), float("nan")]
    low, high = np.quantile(values, [0.025, 0.975])
    return [float(low), float(high)]


def _paired_bootstrap(y: np.ndarray, model: np.ndarray, rules: np.ndarray, n_boot: int, seed: int
                      ) -> dict[str, dict[str, Any]]:
    """Point estimates and 95% CIs; each resample draws the same leads for both scorers."""
    n = len(y)
    yf = y.astype("float64")
    gm, km = _tie_groups(model)
    gr, kr = _tie_groups(rules)
    ones = np.ones(n)
    m_auc, m_ap = _auc_ap(gm, km, yf, ones)
    r_auc, r_ap = _auc_ap(gr, kr, yf, ones)
    rng = np.random.default_rng(seed)
    draws = np.full((n_boot, 4), np.nan)
    for b in range(n_boot):
        # Multiplicity weights are a resample with replacement without materialising it.
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype("float64")
        draws[b, :2] = _auc_ap(gm, km, yf, w)
        draws[b, 2:] = _auc_ap(gr, kr, yf, w)
    return {
        "model": {"roc_auc": m_auc, "roc_auc_ci": _ci(draws[:, 0]), "pr_auc": m_ap, "pr_auc_ci": _ci(draws[:, 1])},
        "rules": {"roc_auc": r_auc, "roc_auc_ci": _ci(draws[:, 2]), "pr_auc": r_ap, "pr_auc_ci": _ci(draws[:, 3])},
        "difference": {"roc_auc": m_auc - r_auc, "roc_auc_ci": _ci(draws[:, 0] - draws[:, 2]),
                       "pr_auc": m_ap - r_ap, "pr_auc_ci": _ci(draws[:, 1] - draws[:, 3])},
    }


def _tie_broken_rank(score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0 for the highest score; equal scores ordered at random (seeded)."""
    order = np.lexsort((rng.random(len(score)), -score))
    rank = np.empty(len(score), dtype="int64")
    rank[order] = np.arange(len(score))
    return rank


def _deciles(who: str, score: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    n = len(y)
    decile = _tie_broken_rank(score, rng) * 10 // n + 1
    frame = pd.DataFrame({"decile": decile, "y": y, "score": score})
    out = frame.groupby("decile").agg(leads=("y", "size"), conversions=("y", "sum"), min_score=("score", "min"),
                                      max_score=("score", "max")).reset_index()
    out["conversion_rate"] = out["conversions"] / out["leads"]
    out["lift"] = out["conversion_rate"] / y.mean()
    out["cumulative_conversions"] = out["conversions"].cumsum()
    out["cumulative_share_of_conversions"] = out["cumulative_conversions"] / y.sum()
    out.insert(0, "scorer", who)
    return out


def _captured(score: np.ndarray, y: np.ndarray, n_worked: np.ndarray) -> np.ndarray:
    """Expected conversions among the top `n_worked` leads; equally scored leads at the cut taken in proportion."""
    inverse, n_groups = _tie_groups(-score)  # group 0 = highest score
    size = np.bincount(inverse, minlength=n_groups).astype("float64")
    pos = np.bincount(inverse, weights=y.astype("float64"), minlength=n_groups)
    cum_n, cum_pos = np.cumsum(size), np.cumsum(pos)
    n_worked = np.asarray(n_worked, dtype="float64")
    g = np.minimum(np.searchsorted(cum_n, n_worked, side="left"), n_groups - 1)
    before_n, before_pos = cum_n[g] - size[g], cum_pos[g] - pos[g]
    out = before_pos + pos[g] * (n_worked - before_n) / size[g]
    return np.where(n_worked <= 0, 0.0, out)


def _capacity_curve(model: np.ndarray, rules: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    n = len(y)
    share = np.arange(1, 101) / 100
    n_worked = np.round(share * n).astype("int64")
    total = float(y.sum())
    out = pd.DataFrame({"share_of_leads": share, "leads_worked": n_worked,
                        "model": _captured(model, y, n_worked), "rules": _captured(rules, y, n_worked),
                        "random": n_worked * total / n})
    out["best_possible"] = np.minimum(n_worked, total)
    return out


def _band_order(bands: pd.Series, score: np.ndarray) -> list[str]:
    """Bands from lowest to highest by their average score (works for any band names)."""
    means = pd.Series(score).groupby(bands.to_numpy()).mean().sort_values()
    return [str(b) for b in means.index]


def _band_table(who: str, bands: pd.Series, y: np.ndarray, order: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame({"band": bands.astype("str").to_numpy(), "y": y})
    out = frame.groupby("band").agg(leads=("y", "size"), conversions=("y", "sum"))
    out = out.reindex(list(order)).fillna(0).astype("int64").reset_index()
    out["share_of_leads"] = out["leads"] / len(y)
    out["conversion_rate"] = np.where(out["leads"] > 0, out["conversions"] / out["leads"].clip(lower=1), np.nan)
    out["share_of_conversions"] = out["conversions"] / max(int(y.sum()), 1)
    out.insert(0, "scorer", who)
    return out


# ----------------------------------------------------------------------------------------------- cut-offs


def _closest_cut(values: np.ndarray, desc_unique: np.ndarray, target: float) -> float:
    """The score cut-off (score >= cut) whose lead count is closest to `target` (ties: fewer leads)."""
    ordered = np.sort(values)
    counts = len(ordered) - np.searchsorted(ordered, desc_unique, side="left")
    best = np.lexsort((counts, np.abs(counts - target)))[0]
    return float(desc_unique[best])


def recommend_cutoffs(
    model_scores: pd.DataFrame,
    weeks: float | None = None,
    sales_per_week: float | None = None,
    telemarketing_per_week: float | None = None,
    *,
    score_column: str = "score",
    probability_column: str = "probability",
    label_column: str = LABEL,
) -> pd.DataFrame:
    """Model score cut-offs that fill sales and telemarketing capacity, with the conversions each team would see.

    Capacities are leads per week (defaults: 10% and 20% of the weekly volume); `weeks` is the length of the
    window the scores cover (None: the whole frame counts as one week). A team works leads with
    score >= its `min_score` (sales first, telemarketing the next ones); each cut-off is the score whose lead
    count comes closest to the capacity. Expected conversions sum the model's probabilities; observed ones
    (when `label_column` is present) count outcomes.
    """
    require_columns(model_scores, [score_column], source="model scores", what="score")
    if weeks is not None and not weeks > 0:
        raise DataError(f"recommend_cutoffs: weeks must be > 0, got {weeks!r}")
    periods = float(weeks) if weeks is not None else 1.0
    values = pd.to_numeric(model_scores[score_column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    ok = ~np.isnan(values)
    values = values[ok]
    n = len(values)
    if n == 0:
        raise DataError("recommend_cutoffs: no scored leads")
    weekly_volume = n / periods
    sales_cap = DEFAULT_SALES_SHARE * weekly_volume if sales_per_week is None else float(sales_per_week)
    tele_cap = DEFAULT_TELEMARKETING_SHARE * weekly_volume if telemarketing_per_week is None \
        else float(telemarketing_per_week)
    desc = np.unique(values)[::-1]
    sales_cut = _closest_cut(values, desc, sales_cap * periods)
    n_sales = int((values >= sales_cut).sum())
    below = desc[desc < sales_cut]
    tele_cut = _closest_cut(values, below, n_sales + tele_cap * periods) if len(below) else sales_cut
    prob = None
    if probability_column in model_scores.columns:
        prob = pd.to_numeric(model_scores[probability_column], errors="coerce").to_numpy(dtype="float64")[ok]
    label = None
    if label_column in model_scores.columns:
        label = pd.to_numeric(model_scores[label_column], errors="coerce").to_numpy(dtype="float64")[ok]
    teams = [("sales", values >= sales_cut, sales_cut, sales_cap),
             ("telemarketing", (values >= tele_cut) & (values < sales_cut), tele_cut, tele_cap),
             ("nurture", values < tele_cut, float(values.min()), float("nan"))]
    rows = []
    for name, mask, cut, cap in teams:
        leads = int(mask.sum())
        row: dict[str, Any] = {"team": name, "min_score": cut, "capacity_per_week": cap, "leads": leads,
                               "leads_per_week": leads / periods, "share_of_leads": leads / n}
        if prob is not None:
            expected = float(np.nansum(prob[mask]))
            row.update(expected_conversions=expected, expected_conversions_per_week=expected / periods,
                       expected_conversion_rate=expected / leads if leads else float("nan"))
        if label is not None:
            observed = float(np.nansum(label[mask]))
            row.update(observed_conversions=observed, observed_conversions_per_week=observed / periods,
                       observed_conversion_rate=observed / leads if leads else float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------- compare


def _ids(values: pd.Series) -> pd.Series:
    return values.astype("string").str.strip()


def _prepare(frame: pd.DataFrame, id_column: str, columns: Sequence[str], what: str) -> pd.DataFrame:
    require_columns(frame, [id_column, *columns], source=what)
    out = frame.copy()
    out[id_column] = _ids(out[id_column])
    dupes = out[id_column].duplicated() & out[id_column].notna()
    if dupes.any():
        raise DataError(f"{what}: column {id_column!r}: duplicate lead id {out.loc[dupes, id_column].iloc[0]!r}; "
                        f"compare one score per lead")
    return out


def _headline(n: int, y_total: int, weeks: float | None, capacity_per_week: float | None,
              model: np.ndarray, rules: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    per_week = weeks is not None and weeks > 0
    if capacity_per_week is not None and per_week:
        n_worked = int(min(n, round(capacity_per_week * weeks)))
        cap_week = float(capacity_per_week)
        basis = f"{capacity_per_week:,.0f} leads a week"
    else:
        n_worked = max(1, int(round(DEFAULT_CAPACITY_SHARE * n)))
        cap_week = n_worked / weeks if per_week else float("nan")
        basis = f"the top {DEFAULT_CAPACITY_SHARE:.0%} of leads"
    m = float(_captured(model, y, np.array([n_worked]))[0])
    r = float(_captured(rules, y, np.array([n_worked]))[0])
    rand = n_worked * y_total / n
    extra = m - r
    pct = 100 * extra / r if r > 0 else float("nan")
    more = "more" if extra >= 0 else "fewer"
    pct_text = f"{pct:+.0f}%" if math.isfinite(pct) else "rules found none"
    if per_week:
        given = capacity_per_week is not None
        text = (f"With capacity for {cap_week:,.0f} leads a week{'' if given else f' ({basis})'}, the model finds "
                f"{abs(extra) / weeks:,.1f} "
                f"{more} conversions a week than the rules ({pct_text}): {m / weeks:,.1f} vs {r / weeks:,.1f} a week, "
                f"{m:,.0f} vs {r:,.0f} of {y_total:,} conversions over the {weeks:,.1f} weeks compared "
                f"(random order: {rand:,.0f}).")
    else:
        text = (f"With capacity for {basis} ({n_worked:,} leads), the model finds {abs(extra):,.0f} {more} "
                f"conversions than the rules ({pct_text}): {m:,.0f} vs {r:,.0f} of {y_total:,} conversions "
                f"(random order: {rand:,.0f}).")
    return {"text": text, "capacity_leads": n_worked, "capacity_per_week": cap_week,
            "capacity_share": n_worked / n, "weeks": weeks, "model_conversions": m, "rules_conversions": r,
            "random_conversions": rand, "extra_conversions": extra, "extra_percent": pct,
            "extra_conversions_per_week": extra / weeks if per_week else None}


def compare_scores(
    model_scores: pd.DataFrame,
    rule_scores: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    id_column: str = "lead_id",
    capacity_per_week: int | None = None,
    weeks: float | None = None,
    seed: int = 0,
    n_boot: int = 500,
    label_column: str = LABEL,
    n_disagreements: int = N_DISAGREEMENTS,
    telemarketing_per_week: float | None = None,
) -> Comparison:
    """Compare already-scored leads (model: probability/score/band; rules: score/band) against 0/1 labels.

    The three frames are inner-joined on `id_column` (ids compared as trimmed text); what was dropped is
    counted in `counts`. The model ranks by `probability` when present (finer than the 0-100 score).
    """
    model_cols = ["score", "band"]
    m = _prepare(model_scores, id_column, model_cols, "model scores")
    r = _prepare(rule_scores, id_column, ["score", "band"], "rule scores")
    lab = _prepare(labels, id_column, [label_column], "labels")
    reasons = [c for c in m.columns if c.startswith("reason_") and c[len("reason_"):].isdigit()]
    keep_m = [id_column, *(["probability"] if "probability" in m.columns else []), "score", "band", *reasons]
    joined = (m[keep_m].rename(columns={"probability": "model_probability", "score": "model_score",
                                        "band": "model_band"})
              .merge(r[[id_column, "score", "band"]].rename(columns={"score": "rule_score", "band": "rule_band"}),
                     on=id_column, how="inner")
              .merge(lab[[id_column, label_column]].rename(columns={label_column: LABEL}), on=id_column,
                     how="inner"))
    joined["rule_score"] = pd.to_numeric(joined["rule_score"], errors="coerce")
    joined["model_score"] = pd.to_numeric(joined["model_score"], errors="coerce")
    joined[LABEL] = pd.to_numeric(joined[LABEL], errors="coerce")
    missing = joined[["model_score", "rule_score", LABEL]].isna().any(axis=1)
    joined = joined.loc[~missing].reset_index(drop=True)
    counts = {
        "model_scores": len(m), "rule_scores": len(r), "labels": len(lab),
        "dropped_model_scores": int(len(m) - len(joined)), "dropped_rule_scores": int(len(r) - len(joined)),
        "dropped_labels": int(len(lab) - len(joined)), "dropped_missing_score_or_label": int(missing.sum()),
        "compared": len(joined),
    }
    y = joined[LABEL].to_numpy(dtype="int64")
    if not np.isin(y, (0, 1)).all():
        raise DataError(f"labels: column {label_column!r}: labels must be 0 or 1")
    if len(joined) < 2 or np.unique(y).size < 2:
        raise DataError(f"compare: {len(joined)} leads with both scores and a label and {int(y.sum())} "
                        f"conversions; both classes are needed (ids joined on {id_column!r})")
    model_rank = (joined["model_probability"] if "model_probability" in joined.columns
                  else joined["model_score"]).to_numpy(dtype="float64")
    rules_rank = joined["rule_score"].to_numpy(dtype="float64")
    n, y_total = len(y), int(y.sum())

    metrics = _paired_bootstrap(y, model_rank, rules_rank, n_boot, seed)
    metrics["data"] = {"n": n, "conversions": y_total, "conversion_rate": y_total / n}
    rng = np.random.default_rng(seed)
    deciles = pd.concat([_deciles("model", model_rank, y, rng), _deciles("rules", rules_rank, y, rng)],
                        ignore_index=True)
    capacity = _capacity_curve(model_rank, rules_rank, y)
    headline = _headline(n, y_total, weeks, capacity_per_week, model_rank, rules_rank, y)

    model_order = _band_order(joined["model_band"], model_rank)
    rule_order = _band_order(joined["rule_band"], rules_rank)
    bands = pd.concat([_band_table("model", joined["model_band"], y, model_order),
                       _band_table("rules", joined["rule_band"], y, rule_order)], ignore_index=True)
    agreement = pd.crosstab(pd.Categorical(joined["rule_band"].astype("str"), categories=rule_order),
                            pd.Categorical(joined["model_band"].astype("str"), categories=model_order),
                            dropna=False)
    agreement.index.name, agreement.columns.name = "rule_band", "model_band"

    model_pct = pd.Series(model_rank).rank(pct=True, method="average").to_numpy() * 100
    rule_pct = pd.Series(rules_rank).rank(pct=True, method="average").to_numpy() * 100
    gap = model_pct - rule_pct
    dis = joined.assign(model_percentile=model_pct, rule_percentile=rule_pct, percentile_gap=gap,
                        higher=np.where(gap > 0, "model", "rules"))
    dis = dis.iloc[np.lexsort((dis[id_column].astype("str").to_numpy(), -np.abs(gap)))].head(n_disagreements)
    first = [id_column, LABEL, *(["model_probability"] if "model_probability" in dis.columns else []),
             "model_score", "model_band", "model_percentile", "rule_score", "rule_band", "rule_percentile",
             "percentile_gap", "higher"]
    disagreements = dis[first + reasons].reset_index(drop=True)

    cut_input = joined.rename(columns={"model_score": "score", "model_probability": "probability"})
    cutoffs = recommend_cutoffs(cut_input, weeks, sales_per_week=capacity_per_week,
                                telemarketing_per_week=telemarketing_per_week)
    notes = [TIE_NOTE, f"Bootstrap: {n_boot} paired resamples of the {n:,} leads (seed {seed}), 95% percentile "
             "intervals; the same resampled leads score both model and rules."]
    if counts["dropped_model_scores"] or counts["dropped_rule_scores"] or counts["dropped_labels"]:
        notes.append(f"Leads compared: {n:,} with a model score, a rule score and a label; dropped "
                     f"{counts['dropped_model_scores']:,} model-scored, {counts['dropped_rule_scores']:,} "
                     f"rule-scored and {counts['dropped_labels']:,} labelled leads without the others.")
    return Comparison(n_leads=n, n_conversions=y_total, counts=counts, metrics=metrics, deciles=deciles,
                      capacity=capacity, headline=headline, bands=bands, agreement=agreement,
                      disagreements=disagreements, cutoffs=cutoffs,
                      window={"weeks": weeks}, notes=tuple(notes), seed=seed, n_boot=n_boot)


# ----------------------------------------------------------------------------------------------- end to end


def _model_label_settings(bundle: Any) -> tuple[str | None, str]:
    data = (bundle.meta.get("config") or {}).get("data") or {}
    return data.get("label"), data.get("converted_at") or "converted_at"


def label_like_model(
    predictor: Any,
    leads: pd.DataFrame,
    outcomes: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    *,
    labels_from: str | None = None,
    converted_at: str | None = None,
    data_end: pd.Timestamp | str | None = None,
) -> tuple[Any, str]:
    """Label leads the way the model was trained (its as_of rule and label window, or its label column).

    Returns the `features.labels.Labelled` result (leads with as_of and label, counts) and a sentence saying how.
    """
    from leadscore.features.labels import infer_data_end, label_leads, labels_from_column, outcome_times

    bundle = predictor.bundle
    spec = bundle.spec
    id_col, created = spec.id_column, spec.created_column
    require_columns(leads, [id_col], source="leads", what="id")
    work = leads.copy()
    work[id_col] = _ids(work[id_col])
    has_dates = created in work.columns
    if has_dates:
        work[created] = parse_timestamps(work[created], source="leads", column=created, allow_missing=False)
    model_label, model_converted_at = _model_label_settings(bundle)
    label_name = labels_from if labels_from is not None else (model_label if converted_at is None else None)
    if label_name is not None:
        saved = bundle.meta.get("label") or {}  # the mapping training used (e.g. 'Won' = converted)
        labelled = labels_from_column(work, outcomes, label=label_name, id_column=id_col, created_column=created,
                                      as_of_days=spec.as_of_days, positive=tuple(saved.get("positive", ())),
                                      open_values=tuple(saved.get("open", ())))
        return labelled, f"outcome column {label_name!r}"
    if outcomes is None:
        raise DataError("compare: no outcomes table and no label column; give one of them")
    conv_col = converted_at or model_converted_at
    converted = outcome_times(outcomes, id_column=id_col, converted_at=conv_col, source="outcomes")
    if data_end is None:
        ev_times = None
        if events is not None and spec.event_time in events.columns:
            ev_times = parse_timestamps(events[spec.event_time], source="events", column=spec.event_time)
        data_end = infer_data_end(work[created], converted, ev_times)
    labelled = label_leads(work, converted, id_column=id_col, created_column=created,
                           as_of_days=spec.as_of_days, window_days=spec.label_window_days,
                           data_end=pd.Timestamp(data_end), source="leads")
    how = (f"converted within {spec.label_window_days} days after as_of = created + {spec.as_of_days} days "
           f"(column {conv_col!r}); {labelled.counts['converted_before_as_of']:,} already converted and "
           f"{labelled.counts['immature']:,} immature leads left out")
    return labelled, how


def compare_model_and_rules(
    predictor: Any,
    rule_scorer: Any,
    leads: pd.DataFrame,
    outcomes: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    *,
    labels_from: str | None = None,
    converted_at: str | None = None,
    window: str = "test",
    data_end: pd.Timestamp | str | None = None,
    capacity_per_week: int | None = None,
    seed: int = 0,
    n_boot: int = 500,
    scorecard: bool = True,
    telemarketing_per_week: int | None = None,
) -> Comparison:
    """Label leads the model's way, keep its test window, score the same leads with both scorers, compare.

    Labels: `labels_from` names a 0/1 column (in `leads`, or in `outcomes` joined by id); without it, the
    model's own setting (its label column if it was trained on one, else conversion times in
    `outcomes[converted_at]`: converted within spec.label_window_days after as_of = created +
    spec.as_of_days, with already-converted and immature leads left out). `window="test"` keeps leads with
    as_of >= the model's test start when it was trained with a time split (otherwise every given lead is
    compared and the result says so); `"all"` keeps every labelled lead. Both scorers read each lead's
    `as_of` column, so events after it count for neither.
    """
    if window not in ("test", "all"):
        raise DataError(f"compare: window must be 'test' or 'all', not {window!r}")
    bundle = predictor.bundle
    spec = bundle.spec
    id_col = spec.id_column
    labelled, how = label_like_model(predictor, leads, outcomes, events, labels_from=labels_from,
                                     converted_at=converted_at, data_end=data_end)
    rows = labelled.leads
    all_rows = rows
    notes = [f"Labels: {how}."]
    test_start = (bundle.meta.get("training_window") or {}).get("test_start")
    window_info: dict[str, Any] = {"requested": window, "labels": how, "label_counts": dict(labelled.counts)}
    dated = AS_OF in rows.columns and rows[AS_OF].notna().all()
    if window == "test" and test_start and dated:
        start = pd.Timestamp(test_start)
        rows = rows.loc[(rows[AS_OF] >= start).to_numpy()].reset_index(drop=True)
        window_info.update(kind="model test window", test_start=start.isoformat())
        notes.append(f"Leads compared: the model's test window (as_of >= {start:%Y-%m-%d}), never seen in training.")
    elif window == "test":
        window_info.update(kind="all given leads (the model has no time-split test window)")
        notes.append("The model was not trained with a time split, so there is no test window: every given lead "
                     "is compared. Pass only leads the model did not train on for an honest comparison.")
    else:
        window_info.update(kind="all labelled leads")
        notes.append("Leads compared: every labelled lead (window='all'); leads the model trained on flatter it.")
    if len(rows) == 0:
        raise DataError("compare: no labelled lead falls in the comparison window")
    score_input = rows.drop(columns=[LABEL])
    weeks = None
    if dated:
        first, last = rows[AS_OF].min(), rows[AS_OF].max()
        span = (last - first) / pd.Timedelta(days=7)
        weeks = float(span) if span > 0 else None
        window_info.update(as_of_min=first.isoformat(), as_of_max=last.isoformat(), weeks=weeks)
    else:
        # Without dates both scorers score "now"; with no events that changes nothing.
        score_input = score_input.drop(columns=[AS_OF])
    model_scores = predictor.score(score_input, events)
    rule_scores = rule_scorer.score(score_input, events)
    rules_id = id_col if id_col in rule_scores.columns else rule_scores.columns[0]
    rule_scores = rule_scores.rename(columns={rules_id: id_col})
    result = compare_scores(model_scores, rule_scores, rows[[id_col, LABEL]], id_column=id_col,
                            capacity_per_week=capacity_per_week, weeks=weeks, seed=seed, n_boot=n_boot,
                            telemarketing_per_week=telemarketing_per_week)
    window_info["weeks"] = weeks
    extra: dict[str, Any] = {}
    if scorecard:
        start = pd.Timestamp(test_start) if (window == "test" and test_start and dated) else None
        extra = _scorecard(predictor, all_rows, rows, events, start, seed=seed, n_boot=n_boot)
    return replace(result, window=window_info, notes=tuple(notes) + result.notes, **extra)


def _scorecard(predictor: Any, all_rows: pd.DataFrame, rows: pd.DataFrame, events: pd.DataFrame | None,
               test_start: pd.Timestamp | None, *, seed: int, n_boot: int) -> dict[str, Any]:
    """Fit the points scorecard on leads before the window (or cross-fit without one) and score the window."""
    from sklearn.metrics import roc_auc_score

    from leadscore.models.scorecard import fit_scorecard

    id_col = predictor.spec.id_column
    drop = [LABEL] if AS_OF in rows.columns and rows[AS_OF].notna().all() else [LABEL, AS_OF]
    window = predictor.features(rows.drop(columns=drop), events)
    y_window = rows.set_index(id_col).loc[window.ids.to_numpy(), LABEL].to_numpy(dtype=int)
    if test_start is not None:
        train_rows = all_rows.loc[(all_rows[AS_OF] < test_start).to_numpy()]
        train = predictor.features(train_rows.drop(columns=[LABEL]), events)
        y_train = train_rows.set_index(id_col).loc[train.ids.to_numpy(), LABEL].to_numpy(dtype=int)
        card = fit_scorecard(train.features, y_train)
        points = card.score(window.features)
        fitted_on = f"{len(y_train):,} labelled leads before the window"
    else:
        # No held-out window: every lead is scored by a scorecard fitted on the other folds.
        fold = np.random.default_rng(seed).permutation(len(y_window)) % 5
        points = np.zeros(len(y_window))
        for k in range(5):
            part = fit_scorecard(window.features.loc[fold != k], y_window[fold != k])
            points[fold == k] = part.score(window.features.loc[fold == k])
        card = fit_scorecard(window.features, y_window)
        fitted_on = "5-fold cross-fitting on the compared leads"
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(max(n_boot, 50)):
        idx = rng.integers(0, len(y_window), len(y_window))
        if np.unique(y_window[idx]).size == 2:
            boots.append(roc_auc_score(y_window[idx], points[idx]))
    auc = float(roc_auc_score(y_window, points))
    return {"scorecard": {"roc_auc": auc, "roc_auc_ci": _ci(np.asarray(boots)), "fitted_on": fitted_on,
                          "n_rows": int(len(card.table()))},
            "scorecard_table": card.table()}


# ----------------------------------------------------------------------------------------------- report


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _capacity_png(c: Comparison) -> str:
    plt = _plt()
    cap = c.capacity
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = cap["share_of_leads"] * 100
    ax.plot(x, cap["model"], label="model", lw=2)
    ax.plot(x, cap["rules"], label="rules", lw=2)
    ax.plot(x, cap["random"], label="random order", ls="--", color="grey")
    ax.plot(x, cap["best_possible"], label="best possible", color="lightgrey", lw=1)
    share = c.headline["capacity_share"] * 100
    ax.axvline(share, color="black", lw=0.8, ls=":")
    ax.set_xlabel("leads worked (% of leads, highest score first)")
    ax.set_ylabel("conversions captured")
    ax.set_title("Capacity curve: conversions found by working the top N% of leads")
    ax.legend(loc="lower right")
    return _png(fig)


def _lift_png(c: Comparison) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, who in enumerate(("model", "rules")):
        d = c.deciles[c.deciles["scorer"] == who]
        ax.bar(d["decile"] + (i - 0.5) * 0.4, d["lift"], width=0.4, label=who)
    ax.axhline(1, color="grey", ls="--", lw=1)
    ax.set_xticks(range(1, 11))
    ax.set_xlabel("decile (1 = highest scores)")
    ax.set_ylabel("lift (conversion rate / overall)")
    ax.set_title("Lift by decile")
    ax.legend()
    return _png(fig)


def _bands_png(c: Comparison) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, who in zip(axes, ("model", "rules"), strict=True):
        d = c.bands[c.bands["scorer"] == who]
        bars = ax.bar(d["band"], d["conversion_rate"].fillna(0) * 100)
        for bar, leads in zip(bars, d["leads"], strict=True):
            ax.annotate(f"n={leads:,}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=8)
        ax.set_title(f"{who} bands")
        ax.set_ylabel("conversion rate (%)")
    fig.suptitle("Conversion rate by band")
    return _png(fig)


def _fmt_ci(values: Mapping[str, Any], key: str) -> str:
    low, high = values[f"{key}_ci"]
    return f"{values[key]:.3f} [{low:.3f}, {high:.3f}]"


def _table_html(frame: pd.DataFrame, *, index: bool = False) -> str:
    return frame.to_html(index=index, float_format=lambda v: f"{v:,.3f}", border=0, classes="t", na_rep="")


def _html(c: Comparison) -> str:
    from html import escape

    m = c.metrics
    w = c.window
    period = ""
    if w.get("as_of_min"):
        period = f", as_of from {w['as_of_min'][:10]} to {w['as_of_max'][:10]}"
        if w.get("weeks"):
            period += f" ({w['weeks']:.1f} weeks)"
    who = (f"{c.n_leads:,} leads with {c.n_conversions:,} conversions "
           f"({c.n_conversions / c.n_leads:.1%}){period}; window: {w.get('kind', 'as given')}.")
    metric_rows = pd.DataFrame({
        "": ["ROC AUC [95% CI]", "PR AUC [95% CI]"],
        "model": [_fmt_ci(m["model"], "roc_auc"), _fmt_ci(m["model"], "pr_auc")],
        "rules": [_fmt_ci(m["rules"], "roc_auc"), _fmt_ci(m["rules"], "pr_auc")],
        "model - rules": [_fmt_ci(m["difference"], "roc_auc"), _fmt_ci(m["difference"], "pr_auc")],
    })
    cap_points = c.capacity[c.capacity["share_of_leads"].round(2).isin([0.05, 0.1, 0.2, 0.3, 0.5])]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Model vs rules</title><style>",
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        ".headline{font-size:1.25em;background:#eef5ff;padding:0.8em;border-left:4px solid #36c}"
        "table.t{border-collapse:collapse;margin:0.5em 0 1.5em}table.t td,table.t th{padding:3px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}.note{color:#555;font-size:0.9em}",
        "</style></head><body><h1>Lead score: model vs manual rules</h1>",
        f"<p class='headline'>{escape(c.headline_text)}</p>",
        f"<p><b>Leads compared:</b> {escape(who)}</p>",
        "<h2>Ranking quality</h2>", _table_html(metric_rows),
        "<h2>Capacity curve</h2>", f"<img alt='capacity curve' src='data:image/png;base64,{_capacity_png(c)}'>",
        _table_html(cap_points),
        "<h2>Lift by decile</h2>", f"<img alt='lift by decile' src='data:image/png;base64,{_lift_png(c)}'>",
        _table_html(c.deciles),
        "<h2>Conversion by band</h2>", f"<img alt='conversion by band' src='data:image/png;base64,{_bands_png(c)}'>",
        _table_html(c.bands),
        "<h2>Agreement (rows: rule band, columns: model band; lead counts)</h2>", _table_html(c.agreement, index=True),
        *_scorecard_html(c),
        "<h2>Recommended model cut-offs from capacity</h2>", _table_html(c.cutoffs),
        f"<h2>Largest disagreements (top {len(c.disagreements)} by percentile gap)</h2>",
        _table_html(c.disagreements),
        "<h2>Notes</h2><ul>", *[f"<li class='note'>{escape(n)}</li>" for n in c.notes], "</ul></body></html>",
    ]
    return "\n".join(parts)


def _scorecard_html(c: Comparison) -> list[str]:
    from html import escape

    if not c.scorecard:
        return []
    sc = c.scorecard
    low, high = sc["roc_auc_ci"]
    text = (f"A points table learned from the data ({escape(sc['fitted_on'])}) ranks these leads with ROC AUC "
            f"{sc['roc_auc']:.3f} [{low:.3f}, {high:.3f}], against {c.metrics['rules']['roc_auc']:.3f} for the "
            f"rules and {c.metrics['model']['roc_auc']:.3f} for the model. Teams that must keep points can paste it "
            f"into their CRM (scorecard.csv).")
    return ["<h2>Learned points scorecard</h2>", f"<p>{text}</p>", _table_html(c.scorecard_table)]


def write_comparison_report(comparison: Comparison, directory: str | os.PathLike) -> dict[str, Path]:
    """Write report.html (plots embedded), CSV tables and comparison.json into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    c = comparison
    return {
        "html": write_text(_html(c), directory / "report.html"),
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
