"""Margin models: LightGBM, a logistic model over readable transforms, and their blend in margin space.

Every learner maps the encoded feature matrix (`FeatureSpec.encode`) to a raw margin (log-odds before
calibration) and splits that margin exactly into one contribution per feature plus a bias, so reasons add up
whatever learner a run chooses:

- LightGBM: exact TreeSHAP on the margin (`models.explain.tree_contributions`).
- Logistic: coef x (z - mean z) summed back to the source column of every design column z (one-hot levels,
  missing indicator, spline basis), with the bias = intercept + coef . mean z.
- Blend: w x tree + (1 - w) x logistic, and the same weights on the contributions.

Saved as plain numbers (JSON) and LightGBM's own text model: no pickle.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leadscore.features.spec import FeatureSpec, signed_log
from leadscore.models.explain import tree_contributions
from leadscore.runtime import threads

log = logging.getLogger(__name__)

SPLINE_KNOTS = 4
SPLINE_DEGREE = 3
MIN_SPLINE_DISTINCT = 10


def _bspline_bases(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Cubic B-spline bases of c columns at once: x (n, c), knots (c, m) -> (n, c, m + 2), values clipped to
    the outer knots (constant beyond them).

    The Cox-de Boor recursion in numpy (what `scipy.interpolate.BSpline.design_matrix` computes, to 1e-15),
    batched over columns: a sparse design matrix per column costs ~0.1 ms even for one row, which the online
    scorer cannot afford.
    """
    k = SPLINE_DEGREE
    knots = np.asarray(knots, dtype="float64")
    t = np.concatenate([np.repeat(knots[:, :1], k, axis=1), knots, np.repeat(knots[:, -1:], k, axis=1)], axis=1)
    xc = np.clip(np.asarray(x, dtype="float64"), knots[:, 0], knots[:, -1])[:, :, None]
    left, right = t[:, :-1], t[:, 1:]
    basis = ((left <= xc) & (xc < right)).astype("float64")
    # The right end belongs to the last non-empty interval of its column.
    nonempty = left < right
    last = nonempty.shape[1] - 1 - np.argmax(nonempty[:, ::-1], axis=1)
    at_end = xc[:, :, 0] == t[:, -1]
    rows, cols = np.nonzero(at_end)
    basis[rows, cols, last[cols]] = 1.0
    n_t = t.shape[1]
    for p in range(1, k + 1):
        lo, hi = t[:, : n_t - p - 1], t[:, p: n_t - 1]
        lo2, hi2 = t[:, 1: n_t - p], t[:, p + 1:]
        width, width2 = hi - lo, hi2 - lo2
        a = np.where(width > 0, (xc - lo) / np.where(width > 0, width, 1.0), 0.0)
        b = np.where(width2 > 0, (hi2 - xc) / np.where(width2 > 0, width2, 1.0), 0.0)
        basis = a * basis[:, :, :-1] + b * basis[:, :, 1:]
    return basis


def _bspline_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Cubic B-spline basis (n, len(knots) + 2) of one column (see `_bspline_bases`)."""
    return _bspline_bases(np.asarray(x, dtype="float64")[:, None], np.asarray(knots, dtype="float64")[None, :])[:, 0]


@dataclass
class LinearEncoder:
    """Readable transforms of the encoded matrix: numbers signed-log1p, median-imputed, standardised, with a
    missing indicator (or a cubic spline basis); categories one-hot over the spec's codes plus missing."""

    spec: FeatureSpec
    splines: bool = False
    columns_: list[dict[str, Any]] = field(default_factory=list)

    def fit(self, X: np.ndarray) -> LinearEncoder:
        self.columns_ = []
        for j, name in enumerate(self.spec.feature_names):
            x = X[:, j]
            if name in self.spec.categorical_vocab:
                self.columns_.append({"name": name, "kind": "categorical",
                                      "levels": len(self.spec.categorical_vocab[name])})
                continue
            z = signed_log(x)
            present = ~np.isnan(z)
            median = float(np.median(z[present])) if present.any() else 0.0
            filled = np.where(present, z, median)
            center, scale = float(filled.mean()), float(filled.std())
            entry = {"name": name, "kind": "numeric", "median": median, "center": center,
                     "scale": scale if scale > 1e-12 else 1.0, "indicator": bool((~present).any() and present.any())}
            distinct = np.unique(filled).size
            if self.splines and distinct >= MIN_SPLINE_DISTINCT:
                knots = np.unique(np.quantile(filled, np.linspace(0, 1, SPLINE_KNOTS)))
                if knots.size >= 3:
                    entry["knots"] = [float(v) for v in knots]
            self.columns_.append(entry)
        return self

    def _spline_blocks(self, X: np.ndarray) -> dict[int, np.ndarray]:
        """Spline basis of every spline column, computed together per knot count: {column: (n, basis)}."""
        groups: dict[int, list[int]] = {}
        for j, col in enumerate(self.columns_):
            if "knots" in col:
                groups.setdefault(len(col["knots"]), []).append(j)
        out = {}
        for cols in groups.values():
            z = signed_log(X[:, cols])
            medians = np.array([self.columns_[j]["median"] for j in cols])
            filled = np.where(np.isnan(z), medians, z)
            bases = _bspline_bases(filled, np.array([self.columns_[j]["knots"] for j in cols]))
            out.update({j: bases[:, i] for i, j in enumerate(cols)})
        return out

    def transform(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Design matrix (n, m) and, per design column, the index of its source feature."""
        blocks, groups = [], []
        splines = self._spline_blocks(X)
        for j, col in enumerate(self.columns_):
            x = X[:, j]
            if col["kind"] == "categorical":
                codes = np.where(np.isnan(x), col["levels"], x).astype(np.int64)
                codes = np.clip(codes, 0, col["levels"])
                block = np.zeros((len(x), col["levels"] + 1))
                block[np.arange(len(x)), codes] = 1.0
            else:
                z = signed_log(x)
                missing = np.isnan(z)
                filled = np.where(missing, col["median"], z)
                if "knots" in col:
                    block = splines[j]
                else:
                    block = ((filled - col["center"]) / col["scale"])[:, None]
                if col["indicator"]:
                    block = np.column_stack([block, missing.astype("float64")])
            blocks.append(block)
            groups.append(np.full(block.shape[1], j))
        if not blocks:
            return np.zeros((len(X), 0)), np.zeros(0, dtype=np.int64)
        return np.column_stack(blocks), np.concatenate(groups)

    def to_dict(self) -> dict[str, Any]:
        return {"splines": self.splines, "columns": self.columns_}

    @classmethod
    def from_dict(cls, spec: FeatureSpec, values: dict[str, Any]) -> LinearEncoder:
        enc = cls(spec, splines=bool(values["splines"]))
        enc.columns_ = list(values["columns"])
        if [c["name"] for c in enc.columns_] != list(spec.feature_names):
            raise ValueError("the logistic model's columns do not match the feature spec")
        return enc


class LinearMargin:
    """A fitted L2 logistic model over `LinearEncoder` features; margin = intercept + coef . z."""

    kind = "logistic"

    def __init__(self, encoder: LinearEncoder, coef: np.ndarray, intercept: float, design_mean: np.ndarray,
                 c: float) -> None:
        self.encoder = encoder
        self.coef = np.asarray(coef, dtype="float64")
        self.intercept = float(intercept)
        self.design_mean = np.asarray(design_mean, dtype="float64")
        self.c = float(c)

    @classmethod
    def fit(cls, spec: FeatureSpec, X: np.ndarray, y: np.ndarray, *, c: float = 1.0, splines: bool = False,
            seed: int = 0) -> LinearMargin:
        encoder = LinearEncoder(spec, splines=splines).fit(X)
        return cls.fit_design(encoder, encoder.transform(X)[0], y, c=c, seed=seed)

    @classmethod
    def fit_design(cls, encoder: LinearEncoder, Z: np.ndarray, y: np.ndarray, *, c: float, seed: int = 0,
                   start: LinearMargin | None = None) -> LinearMargin:
        """Fit on a design matrix already built by `encoder` (cross-validation reuses one matrix). `start`: a model
        on the same design whose coefficients the solver starts from; the problem is convex, so the result is
        this data's own optimum (to the solver's tolerance), reached in fewer Newton steps."""
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=c, solver="newton-cholesky", max_iter=200, random_state=seed,
                                 warm_start=start is not None)
        if start is not None:
            clf.coef_ = start.coef[None, :].copy()
            clf.intercept_ = np.array([start.intercept])
        clf.fit(Z, y)
        return cls(encoder, clf.coef_[0], float(clf.intercept_[0]), Z.mean(axis=0), c)

    def margin(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype="float64")
        out = np.full(len(X), self.intercept)
        for j, term in enumerate(self._terms()):
            out += term(X[:, j])
        return out

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """(n, k + 1): per source feature sum of coef x (z - mean z); last column the bias."""
        X = np.asarray(X, dtype="float64")
        k = X.shape[1]
        out = np.zeros((len(X), k + 1))
        for j, term in enumerate(self._terms()):
            out[:, j] = term(X[:, j]) - self._term_means[j]
        out[:, k] = self.intercept + float(self.design_mean @ self.coef)
        return out

    def _terms(self) -> list:
        """Each feature's share of the margin as a function of its column, coef . (its design columns), without
        building the design matrix: a table lookup for a category, a line for a number, and for a spline column
        the spline with the coefficients as its control points (one cubic spline, evaluated by scipy)."""
        if getattr(self, "_term_list", None) is not None:
            return self._term_list
        from scipy.interpolate import BSpline

        terms, means, start = [], [], 0
        for col in self.encoder.columns_:
            if col["kind"] == "categorical":
                width = col["levels"] + 1
                weights = self.coef[start:start + width]

                def term(x, weights=weights, levels=col["levels"]):
                    codes = np.clip(np.where(np.isnan(x), levels, x).astype(np.int64), 0, levels)
                    return weights[codes]
            else:
                knots = np.asarray(col.get("knots", ()), dtype="float64")
                width = (len(knots) + 2 if len(knots) else 1) + (1 if col["indicator"] else 0)
                weights = self.coef[start:start + width]
                lo, hi = (float(knots[0]), float(knots[-1])) if len(knots) else (0.0, 0.0)
                curve = None
                if len(knots):
                    k = SPLINE_DEGREE
                    t = np.concatenate([np.repeat(knots[:1], k), knots, np.repeat(knots[-1:], k)])
                    curve = BSpline(t, weights[:len(knots) + 2], k, extrapolate=True)

                def term(x, col=col, weights=weights, curve=curve, lo=lo, hi=hi):
                    z = signed_log(x)
                    missing = np.isnan(z)
                    filled = np.where(missing, col["median"], z)
                    if curve is not None:
                        value = curve(np.clip(filled, lo, hi))
                    else:
                        value = weights[0] * ((filled - col["center"]) / col["scale"])
                    if col["indicator"]:
                        value = value + weights[-1] * missing
                    return value
            terms.append(term)
            means.append(float(self.design_mean[start:start + width] @ self.coef[start:start + width]))
            start += width
        if start != len(self.coef):  # pragma: no cover - the encoder and the coefficients disagree
            raise ValueError(f"design has {start} columns, the model {len(self.coef)} coefficients")
        self._term_list, self._term_means = terms, np.asarray(means)
        return terms

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder.to_dict(), "coef": self.coef.tolist(), "intercept": self.intercept,
                "design_mean": self.design_mean.tolist(), "C": self.c}

    @classmethod
    def from_dict(cls, spec: FeatureSpec, values: dict[str, Any]) -> LinearMargin:
        return cls(LinearEncoder.from_dict(spec, values["encoder"]), np.asarray(values["coef"]),
                   float(values["intercept"]), np.asarray(values["design_mean"]), float(values.get("C", 1.0)))


class TreeMargin:
    """A LightGBM booster's raw score."""

    kind = "lightgbm"

    def __init__(self, booster: Any, num_threads: int = 0) -> None:
        self.booster = booster
        # 0: LightGBM's default (all cores). A process scoring one lead at a time (the API) sets 1: for a single
        # row, starting threads costs more than the prediction, and far more when the cores are busy.
        self.num_threads = num_threads

    def _threads(self) -> dict[str, int]:
        return {"num_threads": self.num_threads if self.num_threads > 0 else threads()}

    def margin(self, X) -> np.ndarray:
        """The raw score: from the kernel's decision tables (equal to LightGBM's, ~2x its speed), else LightGBM."""
        tables = self.shap_tables()
        if tables is None:
            return np.asarray(self.booster.predict(X, raw_score=True, **self._threads()), dtype="float64")
        return tables.margin(np.asarray(X, dtype="float64"), threads=self.num_threads or threads())

    def contributions(self, X) -> np.ndarray:
        """Exact TreeSHAP on the margin: the pattern-table kernel (`models.treeshap`), else LightGBM's own."""
        tables = self.shap_tables()
        if tables is None:
            return tree_contributions(self.booster, X, **self._threads())
        return tables.contributions(np.asarray(X, dtype="float64"), threads=self.num_threads or threads())

    def shap_tables(self):
        """The booster's TreeSHAP tables, built on first use (None when the kernel does not cover the model)."""
        if not hasattr(self, "_tables"):
            from leadscore.models.treeshap import Unsupported, build_tables

            try:
                self._tables = build_tables(self.booster)
            except Unsupported as exc:
                log.info("exact reasons through LightGBM's pred_contrib: %s", exc)
                self._tables = None
        return self._tables


class BlendMargin:
    """w x LightGBM margin + (1 - w) x logistic margin; contributions blend with the same weights."""

    kind = "blend"

    def __init__(self, tree: TreeMargin, linear: LinearMargin, weight: float) -> None:
        self.tree = tree
        self.linear = linear
        self.weight = float(weight)

    @property
    def booster(self) -> Any:
        return self.tree.booster

    def margin(self, X) -> np.ndarray:
        return self.weight * self.tree.margin(X) + (1 - self.weight) * self.linear.margin(np.asarray(X))

    def contributions(self, X) -> np.ndarray:
        out = self.tree.contributions(X)
        out *= self.weight  # in place: a million rows of contributions are ~400 MB a copy
        linear = self.linear.contributions(np.asarray(X))
        linear *= 1 - self.weight
        out += linear
        return out


MarginModel = TreeMargin | LinearMargin | BlendMargin


def learner_description(model: MarginModel) -> str:
    """Short readable name ('LightGBM', 'logistic (splines)', 'blend 0.6 LightGBM + 0.4 logistic')."""
    if isinstance(model, TreeMargin):
        return "LightGBM"
    if isinstance(model, LinearMargin):
        return "logistic (splines)" if model.encoder.splines else "logistic"
    lin = "logistic (splines)" if model.linear.encoder.splines else "logistic"
    return f"blend {model.weight:.2f} LightGBM + {1 - model.weight:.2f} {lin}"


def learner_to_json(model: MarginModel) -> str:
    """The learner's description file; a LightGBM part is saved separately as model.txt."""
    if isinstance(model, TreeMargin):
        values: dict[str, Any] = {"kind": "lightgbm"}
    elif isinstance(model, LinearMargin):
        values = {"kind": "logistic", "logistic": model.to_dict()}
    else:
        values = {"kind": "blend", "weight": model.weight, "logistic": model.linear.to_dict()}
    return json.dumps(values, indent=1, sort_keys=True)


def learner_from_json(text: str | None, spec: FeatureSpec, booster: Any | None) -> MarginModel:
    """Rebuild a learner from its description (None: a LightGBM-only bundle of an earlier format)."""
    values = json.loads(text) if text else {"kind": "lightgbm"}
    kind = values.get("kind")
    if kind == "lightgbm":
        if booster is None:
            raise ValueError("a LightGBM learner needs model.txt")
        return TreeMargin(booster)
    if kind == "logistic":
        return LinearMargin.from_dict(spec, values["logistic"])
    if kind == "blend":
        if booster is None:
            raise ValueError("a blend needs model.txt")
        return BlendMargin(TreeMargin(booster), LinearMargin.from_dict(spec, values["logistic"]),
                           float(values["weight"]))
    raise ValueError(f"unknown learner kind {kind!r}")


def tree_booster(model: MarginModel) -> Any | None:
    """The LightGBM booster inside a learner, if any."""
    if isinstance(model, TreeMargin | BlendMargin):
        return model.booster
    return None
