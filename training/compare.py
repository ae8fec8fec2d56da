"""Any two scorers on the same leads (the model against manual rules): AUCs with paired bootstrap intervals,
deciles, capacity curve and headline, bands, agreement, capacity cut-offs and a learned points scorecard.

`compare_scores` is pure (already-scored frames and labels in, a `Comparison` out); `compare_scorers` scores the
same leads with two `models.scoring.Scorer`s and calls it (one call); `compare_model_and_rules` labels leads the
model's way (`label_like_model`, also used by promotion), keeps the model's test window (`test_window`), compares
and adds the scorecard. The report is `leadscore.presentation.comparison.write_comparison_report`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from leadscore.features.errors import DataError
from leadscore.features.io import parse_timestamps, require_columns
from leadscore.features.spec import AS_OF, LABEL
from leadscore.models.metrics import BOOTSTRAP_DRAWS, BOOTSTRAP_SEED, RANKING_METRICS, bootstrap_metrics, interval
from leadscore.models.scoring import Scorer

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
    # Display names of the two roles (the challenger is "model", the incumbent "rules" in every table key).
    names: dict[str, str] = field(default_factory=lambda: {"model": "model", "rules": "rules"})
    # The first scorer's scores as it returned them (with reasons), when it was run here.
    model_scores: pd.DataFrame | None = field(default=None, repr=False)

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
            "scorecard": self.scorecard, "names": self.names,
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


def _ci(table: pd.DataFrame, who: str, metric: str) -> list[float]:
    _, low, high = interval(table, who, metric)
    return [low, high]


def paired_metrics(y: np.ndarray, first: np.ndarray, second: np.ndarray, *, n_boot: int = BOOTSTRAP_DRAWS,
                   seed: int = BOOTSTRAP_SEED, names: tuple[str, str] = ("model", "rules")
                   ) -> dict[str, dict[str, Any]]:
    """ROC AUC and PR AUC of two scorers on the same leads with paired bootstrap 95% intervals, and their gap.

    The intervals come from `models.metrics.bootstrap_metrics`: the model card's intervals for the same model on
    the same leads (same method, resamples and seed).
    """
    a, b = names
    table = bootstrap_metrics(y, {a: first, b: second}, metrics=RANKING_METRICS, n_boot=n_boot, seed=seed)
    out: dict[str, dict[str, Any]] = {}
    for key, who in ((a, a), (b, b), ("difference", f"{a} - {b}")):
        out[key] = {}
        for metric in RANKING_METRICS:
            out[key][metric] = interval(table, who, metric)[0]
            out[key][f"{metric}_ci"] = _ci(table, who, metric)
    return out


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
              model: np.ndarray, rules: np.ndarray, y: np.ndarray,
              names: tuple[str, str] = ("model", "rules")) -> dict[str, Any]:
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
        text = (f"With capacity for {cap_week:,.0f} leads a week{'' if given else f' ({basis})'}, the {names[0]} "
                f"finds {abs(extra) / weeks:,.1f} {more} conversions a week than the {names[1]} ({pct_text}): "
                f"{m / weeks:,.1f} vs {r / weeks:,.1f} a week, "
                f"{m:,.0f} vs {r:,.0f} of {y_total:,} conversions over the {weeks:,.1f} weeks compared "
                f"(random order: {rand:,.0f}).")
    else:
        text = (f"With capacity for {basis} ({n_worked:,} leads), the {names[0]} finds {abs(extra):,.0f} {more} "
                f"conversions than the {names[1]} ({pct_text}): {m:,.0f} vs {r:,.0f} of {y_total:,} conversions "
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
    seed: int = BOOTSTRAP_SEED,
    n_boot: int = BOOTSTRAP_DRAWS,
    label_column: str = LABEL,
    n_disagreements: int = N_DISAGREEMENTS,
    telemarketing_per_week: float | None = None,
    names: tuple[str, str] = ("model", "rules"),
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

    metrics = paired_metrics(y, model_rank, rules_rank, n_boot=n_boot, seed=seed)
    metrics["data"] = {"n": n, "conversions": y_total, "conversion_rate": y_total / n}
    rng = np.random.default_rng(seed)
    deciles = pd.concat([_deciles("model", model_rank, y, rng), _deciles("rules", rules_rank, y, rng)],
                        ignore_index=True)
    capacity = _capacity_curve(model_rank, rules_rank, y)
    headline = _headline(n, y_total, weeks, capacity_per_week, model_rank, rules_rank, y, names)

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
             "intervals corrected for the bootstrap bias; the same resampled leads score both, and the model card "
             "shows the same intervals for the model on the same leads."]
    if counts["dropped_model_scores"] or counts["dropped_rule_scores"] or counts["dropped_labels"]:
        notes.append(f"Leads compared: {n:,} with a model score, a rule score and a label; dropped "
                     f"{counts['dropped_model_scores']:,} model-scored, {counts['dropped_rule_scores']:,} "
                     f"rule-scored and {counts['dropped_labels']:,} labelled leads without the others.")
    return Comparison(n_leads=n, n_conversions=y_total, counts=counts, metrics=metrics, deciles=deciles,
                      capacity=capacity, headline=headline, bands=bands, agreement=agreement,
                      disagreements=disagreements, cutoffs=cutoffs,
                      window={"weeks": weeks}, notes=tuple(notes), seed=seed, n_boot=n_boot,
                      names={"model": names[0], "rules": names[1]})


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


def test_window(rows: pd.DataFrame, starts: Sequence[str | pd.Timestamp | None]) -> tuple[pd.DataFrame,
                                                                               pd.Timestamp | None]:
    """The labelled leads no given model trained or calibrated on: as_of >= the latest of the test starts.

    Returns the rows (all of them, and None, when a start is missing or a lead has no as_of) and the start used.
    Comparison and promotion both cut their window here.
    """
    dated = AS_OF in rows.columns and bool(rows[AS_OF].notna().all())
    if not starts or not all(starts) or not dated:
        return rows, None
    start = max(pd.Timestamp(t) for t in starts)
    return rows.loc[(rows[AS_OF] >= start).to_numpy()].reset_index(drop=True), start


def training_seed(bundle: Any) -> int:
    """The seed a model was trained with (its card and verdict bootstrap with it); 0 when not recorded."""
    seed = (bundle.meta.get("config") or {}).get("seed") if isinstance(bundle.meta, dict) else None
    return int(seed) if isinstance(seed, int | np.integer) else BOOTSTRAP_SEED


def compare_scorers(
    first: Scorer,
    second: Scorer,
    leads: pd.DataFrame,
    labels: pd.DataFrame,
    events: pd.DataFrame | None = None,
    *,
    id_column: str = "lead_id",
    names: tuple[str, str] = ("model", "rules"),
    weeks: float | None = None,
    capacity_per_week: int | None = None,
    telemarketing_per_week: int | None = None,
    seed: int = BOOTSTRAP_SEED,
    n_boot: int = BOOTSTRAP_DRAWS,
) -> Comparison:
    """Score the same leads with two scorers (each at the leads' `as_of`) and compare them against `labels`.

    `first` is the challenger (the model's role in the result), `second` the incumbent (the rules' role);
    `names` are their display names in the report. `labels` holds `id_column` and a 0/1 `label`.
    """
    first_scores = first.score(leads, events)
    second_scores = second.score(leads, events)
    for scores in (first_scores, second_scores):
        if id_column not in scores.columns:
            scores.rename(columns={scores.columns[0]: id_column}, inplace=True)
    result = compare_scores(first_scores, second_scores, labels, id_column=id_column, weeks=weeks,
                            capacity_per_week=capacity_per_week, telemarketing_per_week=telemarketing_per_week,
                            seed=seed, n_boot=n_boot, names=names)
    return replace(result, model_scores=first_scores)


def compare_model_and_rules(
    predictor: Scorer,
    rule_scorer: Scorer,
    leads: pd.DataFrame,
    outcomes: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    *,
    labels_from: str | None = None,
    converted_at: str | None = None,
    window: str = "test",
    data_end: pd.Timestamp | str | None = None,
    capacity_per_week: int | None = None,
    seed: int | None = None,
    n_boot: int = BOOTSTRAP_DRAWS,
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
    `as_of` column, so events after it count for neither. `seed` None: the model's training seed, so the
    intervals equal its model card's.
    """
    if window not in ("test", "all"):
        raise DataError(f"compare: window must be 'test' or 'all', not {window!r}")
    bundle = predictor.bundle
    spec = bundle.spec
    id_col = spec.id_column
    seed = training_seed(bundle) if seed is None else seed
    labelled, how = label_like_model(predictor, leads, outcomes, events, labels_from=labels_from,
                                     converted_at=converted_at, data_end=data_end)
    rows = labelled.leads
    all_rows = rows
    notes = [f"Labels: {how}."]
    test_start = (bundle.meta.get("training_window") or {}).get("test_start")
    window_info: dict[str, Any] = {"requested": window, "labels": how, "label_counts": dict(labelled.counts)}
    dated = AS_OF in rows.columns and bool(rows[AS_OF].notna().all())
    start = None
    if window == "test":
        rows, start = test_window(rows, [test_start])
    if start is not None:
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
    result = compare_scorers(predictor, rule_scorer, score_input, rows[[id_col, LABEL]], events, id_column=id_col,
                             weeks=weeks, capacity_per_week=capacity_per_week,
                             telemarketing_per_week=telemarketing_per_week, seed=seed, n_boot=n_boot)
    window_info["weeks"] = weeks
    extra: dict[str, Any] = {}
    if scorecard:
        extra = _scorecard(predictor, all_rows, rows, events, start, result, seed=seed, n_boot=n_boot)
    return replace(result, window=window_info, notes=tuple(notes) + result.notes, **extra)


def _scorecard(predictor: Any, all_rows: pd.DataFrame, rows: pd.DataFrame, events: pd.DataFrame | None,
               test_start: pd.Timestamp | None, result: Comparison, *, seed: int, n_boot: int) -> dict[str, Any]:
    """Fit the points scorecard on leads before the window (or cross-fit without one), score the window, and
    state what it gives up against the model (paired bootstrap on the window's leads)."""
    from leadscore.models.scorecard import evaluate_scorecard

    id_col = predictor.spec.id_column
    drop = [LABEL] if AS_OF in rows.columns and rows[AS_OF].notna().all() else [LABEL, AS_OF]
    window = predictor.features(rows.drop(columns=drop), events)
    y_window = rows.set_index(id_col).loc[window.ids.to_numpy(), LABEL].to_numpy(dtype=int)
    if test_start is not None:
        train_rows = all_rows.loc[(all_rows[AS_OF] < test_start).to_numpy()]
        train = predictor.features(train_rows.drop(columns=[LABEL]), events)
        y_train = train_rows.set_index(id_col).loc[train.ids.to_numpy(), LABEL].to_numpy(dtype=int)
        card, points, fitted_on = evaluate_scorecard(train.features, y_train, window.features, seed=seed)
    else:
        card, points, fitted_on = evaluate_scorecard(window.features, y_window, window.features, seed=seed)
    model = result.model_scores
    p_model = (model.assign(**{id_col: _ids(model[id_col])}).set_index(id_col)
               .loc[window.ids.to_numpy(), "probability"].to_numpy(dtype="float64"))
    table = bootstrap_metrics(y_window, {"model": p_model, "scorecard": points.astype("float64")},
                              metrics=("roc_auc",), n_boot=n_boot, seed=seed)
    auc, low, high = interval(table, "scorecard", "roc_auc")
    gap, gap_low, gap_high = interval(table, "model - scorecard", "roc_auc")
    shown = card.table()
    return {"scorecard": {"roc_auc": auc, "roc_auc_ci": [low, high], "fitted_on": fitted_on,
                          "n_rows": int(len(shown)), "n_features": len(card.bins_),
                          "model_roc_auc": interval(table, "model", "roc_auc")[0],
                          "model_minus_scorecard": gap, "model_minus_scorecard_ci": [gap_low, gap_high],
                          "monotone": card.monotone_features()},
            "scorecard_table": shown}
