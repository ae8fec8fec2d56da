"""A learned points scorecard: binned features, an L2 logistic regression, integer points marketing can paste.

Each feature is cut into a few bins (numeric: training quantiles, missing as its own bin; categorical: its
frequent levels, rare ones merged into "other", missing as its own bin). A logistic regression on the one-hot
bins gives log-odds per bin, which standard scorecard scaling turns into points:
score = offset + factor * log-odds with factor = points_to_double_odds / ln 2, so every
`points_to_double_odds` points double the odds of converting and `base_points` stands for `base_odds`.
Each feature's points are centred on its training average and the centre moves into the base points, so a
feature whose points all round to 0 has no effect and is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

MISSING = "missing"
OTHER = "other"
FORMAT_VERSION = 1


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
    """How one feature is cut: numeric edges or categorical levels; `labels` describe every bin in order."""

    feature: str
    kind: str  # "numeric" or "categorical"
    edges: list[float] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)

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
            out = [f"{name} = {level}" for level in self.levels]
            out.append(f"{name}: {OTHER} (rare or new values)")
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
        lookup = {level: i for i, level in enumerate(self.levels)}
        code = text.map(lookup).astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
        other = len(self.levels)
        code = np.where(np.isnan(code), other, code).astype("int64")
        return np.where(text.isna().to_numpy(), n_bins - 1, code)

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "kind": self.kind, "edges": list(self.edges), "levels": list(self.levels)}


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype)


def _fit_bins(name: str, values: pd.Series, max_bins: int, min_count: int) -> _Bins:
    if _is_numeric(values):
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        x = x[~np.isnan(x)]
        if len(x) == 0:
            return _Bins(name, "numeric")
        distinct = np.unique(x)
        if len(distinct) <= max_bins:
            # Few values (flags, small counts): one bin per value, else quantiles collapse onto the mode.
            return _Bins(name, "numeric", edges=[float(v) for v in distinct[1:]])
        qs = np.quantile(x, np.linspace(0, 1, max_bins + 1)[1:-1])
        # An edge at or below the minimum would make an empty bottom bin (count features are mostly 0).
        edges = sorted({_nice(q) for q in qs if _nice(q) > x.min()})
        return _Bins(name, "numeric", edges=edges)
    text = values.astype("string").str.strip()
    counts = text.mask(text == "").dropna().value_counts()
    levels = sorted(str(k) for k, v in counts.items() if v >= min_count)
    return _Bins(name, "categorical", levels=levels)


class Scorecard:
    """Integer points per feature bin, learned from data (scikit-learn style: fit returns self)."""

    def __init__(self, *, max_bins: int = 5, points_to_double_odds: float = 20.0, base_points: float = 50.0,
                 base_odds: float | None = None, C: float = 1.0, min_category_share: float = 0.01,  # noqa: N803
                 min_category_count: int = 10) -> None:
        self.max_bins = max_bins
        self.points_to_double_odds = points_to_double_odds
        self.base_points = base_points
        self.base_odds = base_odds
        self.C = C
        self.min_category_share = min_category_share
        self.min_category_count = min_category_count

    # ------------------------------------------------------------------ fitting

    def _design(self, frame: pd.DataFrame, bins: list[_Bins]):
        from scipy import sparse

        n = len(frame)
        blocks = []
        for b in bins:
            codes = b.codes(frame[b.feature]) if b.feature in frame.columns else np.full(n, len(b.labels) - 1)
            blocks.append(sparse.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, len(b.labels))))
        return sparse.hstack(blocks, format="csr") if blocks else sparse.csr_matrix((n, 0))

    def fit(self, frame: pd.DataFrame, y: np.ndarray | pd.Series) -> Scorecard:
        """Bin the features, fit the logistic regression, turn its coefficients into integer points."""
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y, dtype="int64")
        if len(y) != len(frame):
            raise ValueError(f"frame has {len(frame)} rows but y has {len(y)}")
        if np.unique(y).size != 2:
            raise ValueError("y needs both classes (0 and 1)")
        min_count = max(self.min_category_count, int(self.min_category_share * len(frame)))
        bins = [_fit_bins(str(c), frame[c], self.max_bins, min_count) for c in frame.columns]
        X = self._design(frame, bins)
        model = LogisticRegression(C=self.C, max_iter=2000)
        model.fit(X, y)
        factor = self.points_to_double_odds / math.log(2)
        odds = self.base_odds if self.base_odds is not None else y.mean() / (1 - y.mean())
        offset = self.base_points - factor * math.log(odds)
        coef = model.coef_.ravel()
        base = offset + factor * float(model.intercept_[0])
        raw_points: list[np.ndarray] = []
        start = 0
        for b in bins:
            k = len(b.labels)
            pts = factor * coef[start:start + k]
            share = np.asarray(X[:, start:start + k].mean(axis=0)).ravel()
            centre = float(pts @ share)
            # A bin no training lead fell in (e.g. "other" when every level is frequent) gets the average: 0.
            raw_points.append(np.where(share > 0, pts - centre, 0.0))
            base += centre
            start += k
        keep = [i for i, p in enumerate(raw_points) if np.any(np.round(p) != 0)]
        self.bins_ = [bins[i] for i in keep]
        self.raw_points_ = [raw_points[i] for i in keep]
        self.points_ = [np.round(p).astype("int64") for p in self.raw_points_]
        self.raw_base_points_ = float(base)
        self.base_points_ = int(round(base))
        self.dropped_features_ = [bins[i].feature for i in range(len(bins)) if i not in keep]
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
        """The unrounded logistic regression's log-odds per row (what the integer points approximate)."""
        self._check()
        return (self._sum(frame, self.raw_points_, self.raw_base_points_) - self.offset_) / self.factor_

    def probability(self, frame: pd.DataFrame) -> np.ndarray:
        """Conversion probability implied by the integer points (scaling inverted)."""
        total = self.score(frame).astype("float64")
        return 1.0 / (1.0 + np.exp(-(total - self.offset_) / self.factor_))

    def table(self) -> pd.DataFrame:
        """One row per bin: feature, bin (readable condition), points; the first row holds the base points."""
        self._check()
        rows = [{"feature": "(base)", "bin": "every lead starts with", "points": self.base_points_}]
        for b, pts in zip(self.bins_, self.points_, strict=True):
            rows += [{"feature": b.feature, "bin": label, "points": int(p)} for label, p in zip(b.labels, pts,
                                                                                                 strict=True)]
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description of the fitted scorecard (settings, bins, points)."""
        self._check()
        return {
            "format": FORMAT_VERSION,
            "params": {"max_bins": self.max_bins, "points_to_double_odds": self.points_to_double_odds,
                       "base_points": self.base_points, "base_odds": self.base_odds, "C": self.C,
                       "min_category_share": self.min_category_share,
                       "min_category_count": self.min_category_count},
            "factor": self.factor_, "offset": self.offset_,
            "base_points": self.base_points_, "raw_base_points": self.raw_base_points_,
            "dropped_features": list(self.dropped_features_),
            "features": [{**b.to_dict(), "points": [int(p) for p in pts], "raw_points": [float(r) for r in raw]}
                         for b, pts, raw in zip(self.bins_, self.points_, self.raw_points_, strict=True)],
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
        card.bins_ = [_Bins(f["feature"], f["kind"], [float(e) for e in f["edges"]], [str(v) for v in f["levels"]])
                      for f in values["features"]]
        card.points_ = [np.asarray(f["points"], dtype="int64") for f in values["features"]]
        card.raw_points_ = [np.asarray(f["raw_points"], dtype="float64") for f in values["features"]]
        return card


def fit_scorecard(
    frame: pd.DataFrame,
    y: np.ndarray | pd.Series,
    *,
    max_bins: int = 5,
    points_to_double_odds: float = 20.0,
    base_points: float = 50.0,
    base_odds: float | None = None,
    C: float = 1.0,  # noqa: N803 - scikit-learn's name
) -> Scorecard:
    """Fit a points scorecard on readable features (e.g. a LeadFrame's `.features`); base_odds None = y's odds."""
    return Scorecard(max_bins=max_bins, points_to_double_odds=points_to_double_odds, base_points=base_points,
                     base_odds=base_odds, C=C).fit(frame, y)
