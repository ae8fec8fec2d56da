"""A learned points scorecard marketing can paste into a CRM: short, monotone, integer points.

How it is built (the classic credit-scorecard recipe, with a row budget):

1. Bins per feature. Numbers: fine bins (one per value when there are few, else deciles), then adjacent bins
   are merged until the conversion rate only rises or only falls along the value (pool-adjacent-violators),
   every bin holds at least `min_bin_share` of the leads, and at most `max_bins` remain. Categories: frequent
   levels (rare ones pooled into "any other value"), levels with similar rates grouped until at most
   `max_bins` groups remain. Missing values are a bin of their own.
2. Each bin's weight of evidence (WoE: log odds of the bin minus log odds overall); each feature's information
   value (IV) ranks how much it tells.
3. Features enter by IV (skipping one that repeats an entered feature: WoE correlation above
   `max_correlation`) while the table stays within `max_rows` rows.
4. A logistic regression on the WoE columns gives one coefficient per feature; a feature with a coefficient
   that is not positive is dropped and the rest refitted. Points = factor x coefficient x WoE: one positive
   number times a monotone WoE, so the points of a numeric feature move in one direction along its value.
5. Scaling: score = offset + factor * log-odds, factor = points_to_double_odds / ln 2, so every
   `points_to_double_odds` points double the odds and `base_points` stands for `base_odds`. Each feature's
   points are centred on its training average (the centre moves into the base points) and rounded; a value
   in a bin no training lead fell in (a new category, a missing value never seen) scores 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

MISSING = "missing"
OTHER = "any other value"
FORMAT_VERSION = 2
MAX_FINE_BINS = 12


def _nice(value: float) -> float:
    """Round a bin edge to 3 significant digits, so the edge used is the edge shown."""
    if value == 0 or not np.isfinite(value):
        return float(value)
    digits = 2 - int(math.floor(math.log10(abs(value))))
    return float(round(value, digits))


def _fmt(value: float) -> str:
    # Plain digits for large edges: a CRM user types "13,100,000", not "1.31e+07".
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:g}"


@dataclass
class _Bins:
    """How one feature is cut: numeric edges or categorical level groups; `labels` describe every bin in order.

    Numeric bins: below the first edge, between edges, above the last, then missing. Categorical bins: one per
    group of levels, then "any other value", then missing.
    """

    feature: str
    kind: str  # "numeric" or "categorical"
    edges: list[float] = field(default_factory=list)
    groups: list[list[str]] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        name = self.feature
        if self.kind == "numeric":
            e = self.edges
            if not e:
                out = [f"{name} present"]
            else:
                out = [f"{name} < {_fmt(e[0])}"]
                out += [f"{name} in [{_fmt(lo)}, {_fmt(hi)})" for lo, hi in zip(e[:-1], e[1:], strict=True)]
                out.append(f"{name} >= {_fmt(e[-1])}")
        else:
            out = [f"{name} = {g[0]}" if len(g) == 1 else f"{name} in {{{', '.join(g)}}}" for g in self.groups]
            out.append(f"{name}: {OTHER}")
        return out + [f"{name} is {MISSING}"]

    def codes(self, values: pd.Series) -> np.ndarray:
        """Bin index per row (the last bin is missing)."""
        n_bins = len(self.labels)
        if self.kind == "numeric":
            x = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            code = np.searchsorted(np.asarray(self.edges, dtype="float64"), x, side="right")
            return np.where(np.isnan(x), n_bins - 1, code)
        text = values.astype("string").str.strip()
        text = text.mask(text == "")
        lookup = {level: i for i, group in enumerate(self.groups) for level in group}
        code = text.map(lookup).astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
        other = len(self.groups)
        code = np.where(np.isnan(code), other, code).astype("int64")
        return np.where(text.isna().to_numpy(), n_bins - 1, code)

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "kind": self.kind, "edges": list(self.edges),
                "groups": [list(g) for g in self.groups]}


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype)


def _merge_blocks(pos: list[float], n: list[float], lows: list[Any], k: int) -> None:
    """Merge block k+1 into block k (in place)."""
    pos[k] += pos.pop(k + 1)
    n[k] += n.pop(k + 1)
    lows.pop(k + 1)


def _monotone_blocks(pos: np.ndarray, n: np.ndarray, lows: list[Any], increasing: bool, max_bins: int,
                     min_count: float) -> list[Any]:
    """Adjacent fine bins merged until rates are monotone, large enough and few enough; returns block starts."""
    p, c, lo = list(map(float, pos)), list(map(float, n)), list(lows)
    sign = 1.0 if increasing else -1.0
    changed = True
    while changed:  # pool adjacent violators
        changed = False
        for k in range(len(c) - 1):
            if sign * (p[k + 1] / c[k + 1] - p[k] / c[k]) < 0:
                _merge_blocks(p, c, lo, k)
                changed = True
                break
    while len(c) > 1 and min(c) < min_count:
        k = int(np.argmin(c))
        if k == 0:
            j = 0
        elif k == len(c) - 1:
            j = k - 1
        else:  # the neighbour with the closer rate
            rate = p[k] / c[k]
            j = k - 1 if abs(p[k - 1] / c[k - 1] - rate) <= abs(p[k + 1] / c[k + 1] - rate) else k
        _merge_blocks(p, c, lo, j)
    while len(c) > max_bins:
        gaps = [abs(p[k + 1] / c[k + 1] - p[k] / c[k]) for k in range(len(c) - 1)]
        _merge_blocks(p, c, lo, int(np.argmin(gaps)))
    return lo


def _numeric_bins(name: str, values: pd.Series, y: np.ndarray, max_bins: int, min_count: float) -> _Bins:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    ok = ~np.isnan(x)
    x, yy = x[ok], y[ok]
    if len(x) == 0 or np.unique(x).size < 2:
        return _Bins(name, "numeric")
    distinct = np.unique(x)
    if len(distinct) <= MAX_FINE_BINS:
        edges = [float(v) for v in distinct[1:]]
    else:
        qs = np.quantile(x, np.linspace(0, 1, 11)[1:-1])
        # An edge at or below the minimum would make an empty bottom bin (count features are mostly 0).
        edges = sorted({_nice(q) for q in qs if _nice(q) > x.min()})
    code = np.searchsorted(np.asarray(edges), x, side="right")
    n = np.bincount(code, minlength=len(edges) + 1).astype("float64")
    pos = np.bincount(code, weights=yy, minlength=len(edges) + 1)
    keep = n > 0
    lows: list[Any] = [None, *edges]
    lows = [lo for lo, k in zip(lows, keep, strict=True) if k]
    n, pos = n[keep], pos[keep]
    rank = pd.Series(x).rank().to_numpy()
    increasing = bool(np.corrcoef(rank, yy)[0, 1] >= 0) if np.std(yy) > 0 else True
    starts = _monotone_blocks(pos, n, lows, increasing, max_bins, min_count)
    return _Bins(name, "numeric", edges=[float(v) for v in starts[1:]])


def _categorical_bins(name: str, values: pd.Series, y: np.ndarray, max_bins: int, min_level: int,
                      min_count: float) -> _Bins:
    text = values.astype("string").str.strip()
    text = text.mask(text == "")
    frame = pd.DataFrame({"level": text, "y": y}).dropna(subset=["level"])
    stats = frame.groupby("level", sort=True)["y"].agg(["sum", "size"])
    stats = stats[stats["size"] >= min_level]
    if stats.empty:
        return _Bins(name, "categorical")
    # Levels in rate order; neighbours with the closest rates are grouped until few enough and large enough.
    stats = stats.assign(rate=stats["sum"] / stats["size"]).sort_values(["rate", "size"], kind="stable")
    groups = [[str(level)] for level in stats.index]
    pos, n = list(stats["sum"].astype(float)), list(stats["size"].astype(float))

    def merge(k: int) -> None:
        groups[k] += groups.pop(k + 1)
        pos[k] += pos.pop(k + 1)
        n[k] += n.pop(k + 1)

    while len(groups) > 1 and min(n) < min_count:
        k = int(np.argmin(n))
        merge(k if k < len(groups) - 1 else k - 1)
    while len(groups) > max_bins:
        gaps = [abs(pos[k + 1] / n[k + 1] - pos[k] / n[k]) for k in range(len(groups) - 1)]
        merge(int(np.argmin(gaps)))
    return _Bins(name, "categorical", groups=[sorted(g) for g in groups])


def _woe(codes: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Weight of evidence per bin (smoothed by half a lead), bin counts, information value."""
    n = np.bincount(codes, minlength=n_bins).astype("float64")
    pos = np.bincount(codes, weights=y, minlength=n_bins)
    neg = n - pos
    p_total, n_total = max(pos.sum(), 1.0), max(neg.sum(), 1.0)
    dist_pos, dist_neg = (pos + 0.5) / (p_total + 0.5), (neg + 0.5) / (n_total + 0.5)
    woe = np.where(n > 0, np.log(dist_pos / dist_neg), 0.0)
    iv = float(np.sum(np.where(n > 0, (pos / p_total - neg / n_total) * woe, 0.0)))
    return woe, n, iv


class Scorecard:
    """Integer points per feature bin, learned from data (scikit-learn style: fit returns self)."""

    def __init__(self, *, max_bins: int = 4, max_rows: int = 40, points_to_double_odds: float = 20.0,
                 base_points: float = 50.0, base_odds: float | None = None, C: float = 1.0,  # noqa: N803
                 min_bin_share: float = 0.05, min_category_share: float = 0.01, min_category_count: int = 10,
                 min_iv: float = 0.02, max_correlation: float = 0.8) -> None:
        self.max_bins = max_bins
        self.max_rows = max_rows
        self.points_to_double_odds = points_to_double_odds
        self.base_points = base_points
        self.base_odds = base_odds
        self.C = C
        self.min_bin_share = min_bin_share
        self.min_category_share = min_category_share
        self.min_category_count = min_category_count
        self.min_iv = min_iv
        self.max_correlation = max_correlation

    # ------------------------------------------------------------------ fitting

    def fit(self, frame: pd.DataFrame, y: np.ndarray | pd.Series) -> Scorecard:
        """Bin the features monotonically, pick them by information value within the row budget, fit, scale."""
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y, dtype="float64")
        if len(y) != len(frame):
            raise ValueError(f"frame has {len(frame)} rows but y has {len(y)}")
        if np.unique(y).size != 2:
            raise ValueError("y needs both classes (0 and 1)")
        n = len(y)
        min_level = max(self.min_category_count, int(self.min_category_share * n))
        min_count = max(self.min_category_count, self.min_bin_share * n)
        candidates = []
        for column in frame.columns:
            values = frame[column]
            if _is_numeric(values):
                bins = _numeric_bins(str(column), values, y, self.max_bins, min_count)
            else:
                bins = _categorical_bins(str(column), values, y, self.max_bins, min_level, min_count)
            codes = bins.codes(values)
            woe, counts, iv = _woe(codes, y, len(bins.labels))
            candidates.append({"bins": bins, "codes": codes, "woe": woe, "counts": counts, "iv": iv,
                               "rows": int((counts > 0).sum())})
        ranked = sorted((c for c in candidates if c["iv"] >= self.min_iv), key=lambda c: -c["iv"])
        chosen: list[dict[str, Any]] = []
        rows = 1  # the base points
        for cand in ranked:
            if rows + cand["rows"] > self.max_rows:
                continue
            column = cand["woe"][cand["codes"]]
            if any(abs(np.corrcoef(column, c["woe"][c["codes"]])[0, 1]) > self.max_correlation for c in chosen):
                continue
            chosen.append(cand)
            rows += cand["rows"]
        while True:
            X = np.column_stack([c["woe"][c["codes"]] for c in chosen]) if chosen else np.zeros((n, 0))
            if not chosen:
                intercept, coef = math.log(y.mean() / (1 - y.mean())), np.zeros(0)
                break
            model = LogisticRegression(C=self.C, max_iter=2000).fit(X, y.astype("int64"))
            coef, intercept = model.coef_.ravel(), float(model.intercept_[0])
            if (coef > 0).all():
                break
            # A feature pulling against its own evidence repeats another one: leave it out and refit.
            chosen = [c for c, b in zip(chosen, coef, strict=True) if b > 0]
        factor = self.points_to_double_odds / math.log(2)
        odds = self.base_odds if self.base_odds is not None else y.mean() / (1 - y.mean())
        offset = self.base_points - factor * math.log(odds)
        base = offset + factor * intercept
        raw_points: list[np.ndarray] = []
        for cand, b in zip(chosen, coef, strict=True):
            pts = factor * b * cand["woe"]
            share = cand["counts"] / n
            centre = float(pts @ share)
            # A bin no training lead fell in (a new category, a missing value never seen) gets the average: 0.
            raw_points.append(np.where(cand["counts"] > 0, pts - centre, 0.0))
            base += centre
        keep = [i for i, p in enumerate(raw_points) if np.any(np.round(p) != 0)]
        self.bins_ = [chosen[i]["bins"] for i in keep]
        self.bin_counts_ = [chosen[i]["counts"].astype("int64") for i in keep]
        self.raw_points_ = [raw_points[i] for i in keep]
        self.points_ = [np.round(p).astype("int64") for p in self.raw_points_]
        # Features left out are still scored by the features kept; the centre of a dropped one is in the base.
        self.raw_base_points_ = float(base + sum(float(raw_points[i] @ (chosen[i]["counts"] / n))
                                                 for i in range(len(chosen)) if i not in keep))
        self.base_points_ = int(round(self.raw_base_points_))
        kept = {b.feature for b in self.bins_}
        self.dropped_features_ = [str(c) for c in frame.columns if str(c) not in kept]
        self.information_value_ = {c["bins"].feature: c["iv"] for c in candidates}
        self.factor_ = factor
        self.offset_ = offset
        return self

    # ------------------------------------------------------------------ scoring

    def _check(self) -> None:
        if not hasattr(self, "points_"):
            raise ValueError("this Scorecard is not fitted yet; call fit() first")

    def _sum(self, frame: pd.DataFrame, points: list[np.ndarray], base: float) -> np.ndarray:
        total = np.full(len(frame), base, dtype="float64")
        for b, pts in zip(self.bins_, points, strict=True):
            if b.feature in frame.columns:
                codes = b.codes(frame[b.feature])
            else:  # a feature absent from the frame counts as missing
                codes = np.full(len(frame), len(b.labels) - 1)
            total += pts[codes]
        return total

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Integer total points per row (base points plus one bin's points per feature)."""
        self._check()
        return self._sum(frame, self.points_, self.base_points_).astype("int64")

    def log_odds(self, frame: pd.DataFrame) -> np.ndarray:
        """The unrounded model's log-odds per row (what the integer points approximate)."""
        self._check()
        return (self._sum(frame, self.raw_points_, self.raw_base_points_) - self.offset_) / self.factor_

    def probability(self, frame: pd.DataFrame) -> np.ndarray:
        """Conversion probability implied by the integer points (scaling inverted)."""
        total = self.score(frame).astype("float64")
        return 1.0 / (1.0 + np.exp(-(total - self.offset_) / self.factor_))

    def table(self) -> pd.DataFrame:
        """One row per bin that training leads fell in: feature, bin (a readable condition), points.

        The first row holds the base points; a lead in a bin not listed (a new category, a missing value never
        seen in training) scores 0 for that feature.
        """
        self._check()
        rows = [{"feature": "(base)", "bin": "every lead starts with (unlisted values: 0 points)",
                 "points": self.base_points_}]
        for b, pts, counts in zip(self.bins_, self.points_, self.bin_counts_, strict=True):
            rows += [{"feature": b.feature, "bin": label, "points": int(p)}
                     for label, p, c in zip(b.labels, pts, counts, strict=True) if c > 0]
        return pd.DataFrame(rows)

    def monotone_features(self) -> dict[str, bool]:
        """Numeric feature -> whether its points only rise or only fall along its value (missing aside)."""
        self._check()
        out = {}
        for b, pts, counts in zip(self.bins_, self.points_, self.bin_counts_, strict=True):
            if b.kind != "numeric":
                continue
            seen = pts[:-1][counts[:-1] > 0]
            steps = np.diff(seen)
            out[b.feature] = bool((steps >= 0).all() or (steps <= 0).all())
        return out

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description of the fitted scorecard (settings, bins, points)."""
        self._check()
        return {
            "format": FORMAT_VERSION,
            "params": {"max_bins": self.max_bins, "max_rows": self.max_rows,
                       "points_to_double_odds": self.points_to_double_odds, "base_points": self.base_points,
                       "base_odds": self.base_odds, "C": self.C, "min_bin_share": self.min_bin_share,
                       "min_category_share": self.min_category_share,
                       "min_category_count": self.min_category_count, "min_iv": self.min_iv,
                       "max_correlation": self.max_correlation},
            "factor": self.factor_, "offset": self.offset_,
            "base_points": self.base_points_, "raw_base_points": self.raw_base_points_,
            "dropped_features": list(self.dropped_features_),
            "features": [{**b.to_dict(), "points": [int(p) for p in pts], "raw_points": [float(r) for r in raw],
                          "counts": [int(c) for c in counts]}
                         for b, pts, raw, counts in zip(self.bins_, self.points_, self.raw_points_,
                                                        self.bin_counts_, strict=True)],
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Scorecard:
        """Rebuild a fitted scorecard from `to_dict()` output."""
        if values.get("format") != FORMAT_VERSION:
            raise ValueError(f"scorecard format {values.get('format')} is not supported (need {FORMAT_VERSION})")
        card = cls(**values["params"])
        card.factor_ = float(values["factor"])
        card.offset_ = float(values["offset"])
        card.base_points_ = int(values["base_points"])
        card.raw_base_points_ = float(values["raw_base_points"])
        card.dropped_features_ = list(values["dropped_features"])
        card.bins_ = [_Bins(f["feature"], f["kind"], [float(e) for e in f["edges"]],
                            [[str(v) for v in g] for g in f["groups"]]) for f in values["features"]]
        card.points_ = [np.asarray(f["points"], dtype="int64") for f in values["features"]]
        card.raw_points_ = [np.asarray(f["raw_points"], dtype="float64") for f in values["features"]]
        card.bin_counts_ = [np.asarray(f["counts"], dtype="int64") for f in values["features"]]
        return card


def fit_scorecard(
    frame: pd.DataFrame,
    y: np.ndarray | pd.Series,
    *,
    max_bins: int = 4,
    max_rows: int = 40,
    points_to_double_odds: float = 20.0,
    base_points: float = 50.0,
    base_odds: float | None = None,
    C: float = 1.0,  # noqa: N803 - scikit-learn's name
) -> Scorecard:
    """Fit a points scorecard on readable features (e.g. a LeadFrame's `.features`); base_odds None = y's odds."""
    return Scorecard(max_bins=max_bins, max_rows=max_rows, points_to_double_odds=points_to_double_odds,
                     base_points=base_points, base_odds=base_odds, C=C).fit(frame, y)


def evaluate_scorecard(
    train: pd.DataFrame,
    y_train: np.ndarray,
    test: pd.DataFrame,
    *,
    folds: int = 5,
    seed: int = 0,
    **options: Any,
) -> tuple[Scorecard, np.ndarray, str]:
    """Fit on `train` and score `test`; with no separate training leads (`train` is `test`), cross-fit instead.

    Returns the scorecard to show (fitted on all of `train`), the held-out points of every `test` row, and a
    phrase saying how they were obtained.
    """
    y_train = np.asarray(y_train, dtype="int64")
    card = fit_scorecard(train, y_train, **options)
    if train is not test:
        return card, card.score(test), f"{len(y_train):,} labelled leads before the window"
    # No held-out window: every lead is scored by a scorecard fitted on the other folds.
    fold = np.random.default_rng(seed).permutation(len(y_train)) % folds
    points = np.zeros(len(y_train), dtype="int64")
    for k in range(folds):
        part = fit_scorecard(train.loc[fold != k], y_train[fold != k], **options)
        points[fold == k] = part.score(train.loc[fold == k])
    return card, points, f"{folds}-fold cross-fitting on the compared leads"
