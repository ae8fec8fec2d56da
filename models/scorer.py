"""The one scoring path: training evaluation, the predictor, batch scoring and the pyfunc model all use it."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from leadscore.features.spec import FeatureSpec, LeadFrame
from leadscore.models.bundle import Bands, ModelBundle
from leadscore.models.explain import margin_contributions, probability_contributions
from leadscore.models.wording import ReasonWording

BASE_RATE = "base_rate"


class Scorer(Protocol):
    """Anything that turns a LeadFrame into lead_id, probability, score, band (and reasons)."""

    def score_frame(self, frame: LeadFrame, *, reasons: bool | str = True) -> pd.DataFrame: ...


REASON_MODES = ("top", "none", "all")
CONTRIBUTION_PREFIX = "contribution_"


def reason_mode(reasons: bool | str | None) -> str:
    """`top` (the top reasons), `none`, or `all` (the top reasons and every feature's contribution); True and
    False mean top and none."""
    if reasons is True:
        return "top"
    if reasons is False or reasons is None:
        return "none"
    mode = str(reasons).strip().lower()
    if mode not in REASON_MODES:
        raise ValueError(f"reasons: {reasons!r} is not one of {', '.join(REASON_MODES)}")
    return mode


def score_from_probability(p: np.ndarray) -> np.ndarray:
    """0-100 score: the calibrated probability in points, rounded (30 means about 30 in 100 convert)."""
    return np.rint(np.asarray(p) * 100).astype("int64")


def assign_bands(scores: np.ndarray, bands: Bands) -> np.ndarray:
    """Band name per score: band i+1 starts at cutoffs[i]."""
    idx = np.searchsorted(np.asarray(bands.cutoffs), np.asarray(scores), side="right")
    return np.asarray(bands.names, dtype=object)[idx]


def _format_value(value) -> str:
    """A feature value as a reason shows it: at most ~12 characters for any number."""
    if value is None:
        return "missing"
    if isinstance(value, float | np.floating | int | np.integer) and not isinstance(value, bool):
        v = float(value)
        if not np.isfinite(v):
            return "missing"
        if v.is_integer() and abs(v) < 1e9:
            return f"{int(v):,}"
        if abs(v) >= 1e6 or abs(v) < 1e-3:
            return f"{v:.3g}"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return str(value)


def top_reasons(contributions: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest contributions by size, per row (ties keep the feature order).

    A partial selection (`argpartition`), then a stable sort of the k chosen; the rows where a tie at the k-th
    size could have been cut either way get the full stable sort, so the result is exactly a stable argsort's.
    """
    size = np.abs(np.asarray(contributions, dtype="float64"))
    n, width = size.shape
    if k <= 0 or n == 0:
        return np.zeros((n, max(k, 0)), dtype=np.int64)
    if k >= width:
        return np.argsort(-size, axis=1, kind="stable")[:, :k]
    chosen = np.sort(np.argpartition(-size, k - 1, axis=1)[:, :k], axis=1)
    order = np.argsort(-np.take_along_axis(size, chosen, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(chosen, order, axis=1)
    kth = np.take_along_axis(size, top[:, -1:], axis=1)
    ties = (size >= kth).sum(axis=1) > k
    if ties.any():
        top[ties] = np.argsort(-size[ties], axis=1, kind="stable")[:, :k]
    return top


def format_values(values) -> np.ndarray:
    """`_format_value` of each cell (missing as "missing"), computed once per distinct value."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values,
                                  use_na_sentinel=True)
    shown = np.asarray([_format_value(shown_value(u)) for u in uniques] + ["missing"], dtype=object)
    return shown[np.where(codes < 0, len(uniques), codes)]


def _cells(values: pd.DataFrame | np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Per row i the cell (i, columns[i]) of `values` as an object, the same object a whole-matrix
    `to_numpy(dtype=object)` holds there; a frame's columns are gathered one at a time (no object matrix)."""
    if not isinstance(values, pd.DataFrame):
        return np.asarray(values, dtype=object)[np.arange(len(columns)), columns]
    out = np.empty(len(columns), dtype=object)
    for col in np.unique(columns):
        rows = np.flatnonzero(columns == col)
        out[rows] = values.iloc[rows, int(col)].to_numpy(dtype=object)
    return out


def shown_value(value):
    """A readable feature value as a reason shows it: None for any kind of missing."""
    if value is None or value is pd.NA or (isinstance(value, float | np.floating) and np.isnan(value)):
        return None
    return value


def reason_text(feature: str, value, contribution: float) -> str:
    """'pricing_page_view_7d = 3 (+8.1 pts)'."""
    return f"{feature} = {_format_value(value)} ({contribution * 100:+.1f} pts)"


class ModelScorer:
    """Scores LeadFrames with a ModelBundle: calibrated probability, score, band and top reasons."""

    def __init__(self, bundle: ModelBundle, n_reasons: int = 3, bands: Bands | None = None) -> None:
        self.bundle = bundle
        self.n_reasons = n_reasons
        self.bands = bands or bundle.bands
        self._wording: ReasonWording | None = None

    @property
    def spec(self) -> FeatureSpec:
        return self.bundle.spec

    def predict_proba_features(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities for a readable feature frame (columns `spec.feature_names`)."""
        X = self.spec.encode(features)
        margin = self.bundle.model.margin(X)
        return self.bundle.calibrator.predict(margin)

    def contributions(self, features: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
        """(base probability, per-feature contributions in probability, probability), adding up exactly."""
        X = self.spec.encode(features)
        raw = margin_contributions(self.bundle.model, X)
        base, contrib, p = probability_contributions(raw, self.bundle.calibrator.predict)
        return base, pd.DataFrame(contrib, columns=list(self.spec.feature_names), index=features.index), p

    def reason_columns(self, reasons: bool | str = True) -> dict[str, str]:
        """The columns (name: dtype) the reasons add after probability, score and band."""
        mode = reason_mode(reasons)
        explained = mode == "all" or (mode == "top" and self.n_reasons > 0)
        if not explained:
            return {}
        columns = {BASE_RATE: "float64"}
        for j in range(1, min(self.n_reasons, len(self.wording.fields)) + 1):
            for suffix, dtype in (("_field", "object"), ("_feature", "object"), ("_value", "object"),
                                  ("_contribution", "float64"), ("", "object")):
                columns[f"reason_{j}{suffix}"] = dtype
        if mode == "all":
            columns.update({f"{CONTRIBUTION_PREFIX}{name}": "float64" for name in self.spec.feature_names})
        return columns

    def score_features(self, ids: pd.Series, features: pd.DataFrame, *, reasons: bool | str = True
                       ) -> pd.DataFrame:
        """One row per lead: id, probability, score, band, and by `reasons` (see `reason_mode`): base_rate and the
        top reasons (`top`), and every feature's contribution (`all`, columns `contribution_<feature>`, adding up
        to probability - base_rate)."""
        id_col = self.spec.id_column
        mode = reason_mode(reasons)
        extra = self.reason_columns(mode)
        if len(features) == 0:  # every row rejected: the same columns, no rows
            out = pd.DataFrame({id_col: pd.Series([], dtype="object"), "probability": np.array([], dtype=float),
                                "score": np.array([], dtype="int64"), "band": pd.Series([], dtype="object")})
            for name, dtype in extra.items():
                out[name] = pd.Series([], dtype=dtype)
            return out
        if extra:
            base, contrib, p = self.contributions(features)
        else:
            p = self.predict_proba_features(features)
        score = score_from_probability(p)
        out = pd.DataFrame({
            id_col: ids.to_numpy(),
            "probability": p,
            "score": score,
            "band": assign_bands(score, self.bands),
        })
        if extra:
            out[BASE_RATE] = base
            parts = [out, self._reasons(features, contrib)] if self.n_reasons > 0 else [out]
            if mode == "all":
                parts.append(pd.DataFrame(contrib.to_numpy(), columns=[f"{CONTRIBUTION_PREFIX}{c}"
                                                                       for c in contrib.columns]))
            out = pd.concat(parts, axis=1)
        return out

    @property
    def wording(self) -> ReasonWording:
        """The model's reason fields and words (its label map, else the defaults for its features)."""
        if self._wording is None:
            self._wording = ReasonWording(self.spec, (self.bundle.meta or {}).get("reason_labels"))
        return self._wording

    def reason_table(self, values: np.ndarray, contributions: np.ndarray) -> dict[str, np.ndarray]:
        """The top reasons of each row as columns: per reason its business field, the field's leading feature and
        value, the field's contribution (the sum of its features') and the sentence with the points.

        `values`: the readable feature values, a frame (columns in the spec's feature order) or an object matrix
        (rows x features); only the cells a reason shows are read. `contributions` in probability."""
        wording = self.wording
        contributions = np.asarray(contributions, dtype="float64")
        grouped = wording.grouped(contributions)
        k = min(self.n_reasons, grouped.shape[1])
        order = top_reasons(grouped, k)
        fields = np.asarray(wording.fields, dtype=object)
        names = np.asarray(wording.feature_names, dtype=object)
        rows = np.arange(len(grouped))
        cols: dict[str, np.ndarray] = {}
        for j in range(k):
            field = order[:, j]
            lead = wording.leading(contributions, field)
            shown = _cells(values, lead)
            amount = grouped[rows, field]
            points = np.char.mod("%+.1f", amount * 100).astype(object)
            cols[f"reason_{j + 1}_field"] = fields[field]
            cols[f"reason_{j + 1}_feature"] = names[lead]
            cols[f"reason_{j + 1}_value"] = format_values(shown)
            cols[f"reason_{j + 1}_contribution"] = amount
            cols[f"reason_{j + 1}"] = wording.sentences(lead, shown) + " (" + points + " pts)"
        return cols

    def _reasons(self, features: pd.DataFrame, contrib: pd.DataFrame) -> pd.DataFrame:
        values = features.reset_index(drop=True)[list(self.wording.feature_names)]
        return pd.DataFrame(self.reason_table(values, contrib.to_numpy()))

    def score_frame(self, frame: LeadFrame, *, reasons: bool = True) -> pd.DataFrame:
        """Score a LeadFrame (the path evaluation and serving share)."""
        return self.score_features(frame.ids, frame.features, reasons=reasons)
