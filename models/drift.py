"""Drift against training, and how a batch should do before its outcomes arrive.

At training, `reference` keeps, per feature, the bins of its training distribution (numbers by training deciles,
categories by level, missing apart) and the score distribution of the held-out test slice; it is saved with the
model. A scored batch is binned the same way (`DriftAccumulator`, chunk by chunk) and compared by PSI. Because
the probabilities are calibrated, the batch also gets its expected conversions and expected ROC AUC, which
`monitor` later holds against what happened.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

N_BINS = 10
_EPS = 1e-4  # share floor in PSI: an empty bin on one side counts as 0.01% (the usual smoothing)
PSI_CHANGED, PSI_SHIFTED = 0.1, 0.25  # the conventional reading: < 0.1 stable, 0.1-0.25 changed, > 0.25 shifted
_NOISE_TIMES = 4.0


def _edges(values: np.ndarray) -> list[float]:
    present = values[~np.isnan(values)]
    if not len(present):
        return []
    return [float(v) for v in np.unique(np.quantile(present, np.linspace(0, 1, N_BINS + 1)[1:-1]))]


def _numeric_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts per bin (len(edges) + 1) and, last, missing."""
    missing = np.isnan(values)
    bins = np.searchsorted(np.asarray(edges, dtype="float64"), values[~missing], side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1).astype("float64")
    return np.append(counts, float(missing.sum()))


def _categorical_counts(values: pd.Series, levels: Sequence[str]) -> np.ndarray:
    """Counts per level and, last, missing (values outside the levels count as missing: the model reads them so)."""
    text = values.astype("object")
    index = {level: i for i, level in enumerate(levels)}
    codes = text.map(index).to_numpy(dtype="float64", na_value=np.nan)
    missing = np.isnan(codes)
    counts = np.bincount(codes[~missing].astype(np.int64), minlength=len(levels)).astype("float64")
    return np.append(counts, float(missing.sum()))


def reference(spec, features: pd.DataFrame, probabilities: np.ndarray) -> dict:
    """The training distribution of every feature and of the score, as JSON-ready bins and shares."""
    out: dict = {"n": int(len(features)), "features": {}}
    for name in spec.feature_names:
        if name in spec.categorical_vocab:
            levels = list(spec.categorical_vocab[name])
            counts = _categorical_counts(features[name], levels)
            out["features"][name] = {"kind": "categorical", "levels": levels,
                                     "shares": (counts / max(counts.sum(), 1)).tolist()}
        else:
            values = pd.to_numeric(features[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            edges = _edges(values)
            counts = _numeric_counts(values, edges)
            out["features"][name] = {"kind": "numeric", "edges": edges,
                                     "shares": (counts / max(counts.sum(), 1)).tolist()}
    p = np.asarray(probabilities, dtype="float64")
    edges = _edges(p)
    counts = _numeric_counts(p, edges)
    out["score"] = {"kind": "numeric", "edges": edges, "shares": (counts / max(counts.sum(), 1)).tolist(),
                    "mean": float(p.mean()) if len(p) else None}
    return out


def psi(expected: Sequence[float], actual_counts: Sequence[float]) -> float:
    """Population stability index of a batch's counts against reference shares (bins empty in both left out;
    half a lead added to every other bin of the batch, so a small batch's empty bins do not dominate)."""
    e = np.asarray(expected, dtype="float64")
    a = np.asarray(actual_counts, dtype="float64")
    used = (e > 0) | (a > 0)
    e, a = np.maximum(e[used], _EPS), a[used] + 0.5
    a = a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def psi_noise(expected: Sequence[float], n: int) -> float:
    """About what PSI a batch of n leads drawn from the reference itself shows: (bins - 1) / n."""
    bins = int(np.sum(np.asarray(expected) > 0))
    return max(bins - 1, 1) / max(n, 1)


def expected_roc_auc(p: np.ndarray) -> float | None:
    """ROC AUC a batch should show if its calibrated probabilities are right: over all pairs, the chance that
    the converting lead of a (converted, not converted) pair has the higher score, ties counting half."""
    p = np.asarray(p, dtype="float64")
    p = p[~np.isnan(p)]
    if len(p) < 2:
        return None
    order = np.argsort(p, kind="stable")
    ps, qs = p[order], 1.0 - p[order]
    uniq, start = np.unique(ps, return_index=True)
    group_q = np.add.reduceat(qs, start)
    below = np.concatenate([[0.0], np.cumsum(group_q)[:-1]])  # sum of (1 - p) of strictly lower scores
    group_of = np.repeat(np.arange(len(uniq)), np.diff(np.append(start, len(ps))))
    # Each lead i against the others: strictly lower all count, equal ones (other than i itself) half.
    numerator = float(np.sum(ps * (below[group_of] + 0.5 * (group_q[group_of] - qs))))
    denominator = float(ps.sum() * qs.sum() - np.sum(ps * qs))
    return numerator / denominator if denominator > 0 else None


class DriftAccumulator:
    """Bins a scored batch chunk by chunk against a model's reference; `result()` gives PSIs and expectations."""

    def __init__(self, ref: dict) -> None:
        self.ref = ref
        self.counts = {name: np.zeros(len(entry["shares"])) for name, entry in ref["features"].items()}
        self.probabilities: list[np.ndarray] = []

    def add(self, features: pd.DataFrame, probabilities: np.ndarray) -> None:
        for name, entry in self.ref["features"].items():
            if name not in features.columns:
                continue
            if entry["kind"] == "categorical":
                self.counts[name] += _categorical_counts(features[name], entry["levels"])
            else:
                values = pd.to_numeric(features[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
                self.counts[name] += _numeric_counts(values, entry["edges"])
        self.probabilities.append(np.asarray(probabilities, dtype="float64"))

    def result(self) -> dict:
        p = np.concatenate(self.probabilities) if self.probabilities else np.zeros(0)
        features = {name: round(psi(self.ref["features"][name]["shares"], counts), 4)
                    for name, counts in self.counts.items() if counts.sum() > 0}
        # A PSI within a few times its own sampling noise is not read as drift, however small the batch.
        noise = {name: psi_noise(self.ref["features"][name]["shares"], int(self.counts[name].sum()))
                 for name in features}
        real = {k: v for k, v in features.items() if v >= _NOISE_TIMES * noise[k]}
        score_ref = self.ref["score"]
        score_psi = round(psi(score_ref["shares"], _numeric_counts(p, score_ref["edges"])), 4) if len(p) else None
        if score_psi is not None and score_psi < _NOISE_TIMES * psi_noise(score_ref["shares"], len(p)):
            score_flag = None
        else:
            score_flag = score_psi
        shifted = sorted((k for k, v in real.items() if v >= PSI_SHIFTED), key=lambda k: -real[k])
        changed = sorted((k for k, v in real.items() if PSI_CHANGED <= v < PSI_SHIFTED), key=lambda k: -real[k])
        auc = expected_roc_auc(p)
        return {"n": int(len(p)), "feature_psi": features, "score_psi": score_psi, "shifted": shifted,
                "changed": changed, "expected_conversions": float(p.sum()),
                "expected_conversion_rate": float(p.mean()) if len(p) else None,
                "expected_roc_auc": None if auc is None else round(auc, 4),
                "reference_mean_probability": score_ref.get("mean"), "text": drift_text(real, score_flag)}


def drift_text(features: dict[str, float], score_psi: float | None) -> list[str]:
    """Sentences a revenue leader can repeat: which inputs moved, and whether the score moved with them."""
    lines = []
    for name, value in sorted(features.items(), key=lambda kv: -kv[1]):
        if value >= PSI_SHIFTED:
            lines.append(f"{name} mix shifted: PSI {value:.2f} (above {PSI_SHIFTED} is a shift)")
        elif value >= PSI_CHANGED:
            lines.append(f"{name} changed: PSI {value:.2f}")
    if score_psi is not None and score_psi >= PSI_CHANGED:
        lines.append(f"the score distribution {'shifted' if score_psi >= PSI_SHIFTED else 'changed'}: PSI "
                     f"{score_psi:.2f} against the test slice")
    return lines


def monitor(scored: pd.DataFrame, converted_at: pd.Series, *, window_days: int, data_end: pd.Timestamp,
            id_column: str = "lead_id", z: float = 1.96) -> dict:
    """Expected against observed conversions of scored leads once their label window has closed.

    `converted_at`: the earliest conversion time by lead id. A lead counts as converted when that time falls in
    (as_of, as_of + window]; leads whose window is still open at `data_end` are pending and left out. Per band and
    overall: leads, expected (sum of probabilities), observed, z = (observed - expected) / sqrt(sum p(1-p)), and
    whether the gap is beyond noise (|z| > `z`); overall also observed against expected ROC AUC.
    """
    from sklearn.metrics import roc_auc_score

    as_of = pd.to_datetime(scored["as_of"], utc=True, format="mixed")
    times = pd.to_datetime(converted_at, utc=True)
    times.index = times.index.astype(str)
    conv = pd.Series(times.reindex(scored[id_column].astype(str).to_numpy()).to_numpy(), index=scored.index)
    conv = pd.to_datetime(conv, utc=True)
    end = as_of + pd.Timedelta(days=window_days)
    closed = (end <= data_end).to_numpy()
    y = ((conv > as_of) & (conv <= end)).to_numpy()
    p = pd.to_numeric(scored["probability"]).to_numpy(dtype="float64")

    def row(mask: np.ndarray, name: str) -> dict:
        pm, ym = p[mask], y[mask]
        expected, observed = float(pm.sum()), int(ym.sum())
        sd = math.sqrt(float(np.sum(pm * (1 - pm)))) if len(pm) else 0.0
        zval = (observed - expected) / sd if sd > 0 else 0.0
        return {"group": name, "leads": int(mask.sum()), "expected": round(expected, 2), "observed": observed,
                "z": round(zval, 2), "beyond_noise": bool(abs(zval) > z)}

    rows = [row(closed, "all")]
    if "band" in scored.columns:
        for band in pd.unique(scored["band"].astype(str)):
            rows.append(row(closed & (scored["band"].astype(str) == band).to_numpy(), f"band {band}"))
    observed_auc = float(roc_auc_score(y[closed], p[closed])) if len(np.unique(y[closed])) == 2 else None
    expected_auc = expected_roc_auc(p[closed])
    overall = rows[0]
    gap = overall["observed"] - overall["expected"]
    if not overall["leads"]:
        verdict = "no scored lead has a closed label window yet"
    elif overall["beyond_noise"]:
        verdict = (f"conversions are {'above' if gap > 0 else 'below'} what the scores promised beyond noise "
                   f"({overall['observed']:,} observed, {overall['expected']:,.1f} expected, z {overall['z']:+.1f}): "
                   f"retrain, or check what changed")
    else:
        verdict = (f"conversions match the scores within noise ({overall['observed']:,} observed, "
                   f"{overall['expected']:,.1f} expected, z {overall['z']:+.1f})")
    return {"rows": rows, "pending": int((~closed).sum()), "observed_roc_auc": observed_auc,
            "expected_roc_auc": expected_auc, "verdict": verdict}
