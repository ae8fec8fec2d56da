"""Data checks before training: column profile, a data-sufficiency gate and leakage probes.

A leak is information that exists in the export only because the outcome happened (a sales-assigned status,
a won date, a deal field). It makes a model look brilliant in testing and useless in production, so the
probes err on the side of flagging; a column the user has checked can be allowed explicitly.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leadscore.features.config import CheckConfig, DataConfig
from leadscore.features.spec import AS_OF, LABEL, FeatureSpec

FATAL, WARNING, INFO = "fatal", "warning", "info"
_OUTCOME_NAME = re.compile(
    r"(convert|(^|[^a-z])won([^a-z]|$)|(^|[^a-z])win(s|ning)?([^a-z]|$)|(^|[^a-z])lost([^a-z]|$)|closed?([^a-z]|$)"
    r"|stage|status|outcome|result|deal|opportunit|churn|signed|purchas|(^|[^a-z])sql([^a-z]|$))",
    re.IGNORECASE,
)
_SALES_NAME = re.compile(
    r"(tag|quality|profile|grade|rating|disposition|owner|(^|[^a-z])reps?([^a-z]|$)|sdr|(^|[^a-z])sr_|assigned"
    r"|score|priority)",
    re.IGNORECASE,
)
_SNAPSHOT_NAME = re.compile(r"(^|[^a-z])(last|latest|current_status|updated)([^a-z]|$)", re.IGNORECASE)


@dataclass
class CheckReport:
    """What the checks found: a per-column profile, problems by severity and a summary."""

    summary: dict[str, Any]
    columns: pd.DataFrame
    problems: list[dict[str, str]] = field(default_factory=list)

    @property
    def fatal(self) -> list[dict[str, str]]:
        return [p for p in self.problems if p["severity"] == FATAL]

    def flagged(self, check: str | None = None) -> set[str]:
        """Columns with a warning or fatal finding (optionally of one check)."""
        return {p["column"] for p in self.problems if p["severity"] != INFO and p["column"]
                and (check is None or p["check"] == check)}

    def to_dict(self) -> dict[str, Any]:
        cols = self.columns.astype(object).where(self.columns.notna(), None)
        return {"summary": self.summary, "problems": self.problems, "columns": cols.to_dict(orient="records")}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)


def sort_problems(problems: list[dict[str, str]]) -> None:
    """Fatal first, then warnings, then information (stable within a severity)."""
    order = {FATAL: 0, WARNING: 1, INFO: 2}
    problems.sort(key=lambda p: order[p["severity"]])


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if np.unique(score).size < 2:
        return 0.5
    auc = float(roc_auc_score(y, score))
    return max(auc, 1 - auc)


def _out_of_fold_rate(keys: pd.Series, y: np.ndarray, seed: int = 0, folds: int = 5, smooth: float = 20.0
                      ) -> np.ndarray:
    """Smoothed conversion rate of each row's key, learned on the other folds (no in-sample optimism)."""
    keys = keys.reset_index(drop=True)
    prior = y.mean()
    fold = np.random.default_rng(seed).integers(0, folds, len(y))
    out = np.empty(len(y))
    for k in range(folds):
        train = fold != k
        stats = pd.DataFrame({"key": keys[train], "y": y[train]}).groupby("key")["y"].agg(["sum", "count"])
        rate = (stats["sum"] + smooth * prior) / (stats["count"] + smooth)
        out[~train] = keys[~train].map(rate).fillna(prior).to_numpy(dtype=float)
    return out


def single_column_auc(values: pd.Series, y: np.ndarray, *, numeric: bool) -> float:
    """How well this column alone ranks the label (0.5 = not at all, 1.0 = perfectly), out of fold."""
    if numeric:
        x = pd.to_numeric(values, errors="coerce")
        filled = x.fillna(x.median() if x.notna().any() else 0).to_numpy(dtype=float)
        monotone = _auc(y, filled)
        if x.nunique() > 10:
            keys = pd.qcut(x, q=10, labels=False, duplicates="drop").astype("Float64").astype(str)
        else:
            keys = x.astype(str)
        keys = keys.where(x.notna(), "__missing__")
        return max(monotone, _auc(y, _out_of_fold_rate(keys, y)))
    keys = values.astype("object").where(values.notna(), "__missing__").astype(str)
    return _auc(y, _out_of_fold_rate(keys, y))


def run_checks(
    labelled: pd.DataFrame,
    spec: FeatureSpec,
    data: DataConfig,
    checks: CheckConfig,
    *,
    counts: dict[str, Any],
    events_after_as_of: int | None = None,
    has_events: bool = False,
) -> CheckReport:
    """Profile every column of the labelled leads and run the sufficiency gate and the leakage probes."""
    y = labelled[LABEL].to_numpy(dtype=int)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    problems: list[dict[str, str]] = []

    def problem(severity: str, check: str, column: str, message: str) -> None:
        problems.append({"severity": severity, "check": check, "column": column, "message": message})

    if n_pos < checks.min_positives or n_neg < checks.min_negatives:
        problem(FATAL, "sufficiency", "",
                f"only {n_pos} conversions and {n_neg} non-conversions among {len(y)} labelled leads; at least "
                f"{checks.min_positives} and {checks.min_negatives} are needed to learn a reliable score. Keep "
                f"using the rule score until more outcomes exist")
    allowed = set(data.allow_columns)
    excluded = data.excluded
    roles = {spec.id_column: "id", spec.created_column: "created_at", LABEL: "label", AS_OF: "as_of"}
    if data.label:
        roles[data.label] = "label"
    rows = []
    for col in labelled.columns:
        values = labelled[col]
        role = roles.get(col)
        if role is None:
            if col in spec.numeric_columns:
                role = "numeric"
            elif col in spec.categorical_vocab:
                role = "categorical"
            elif col in excluded:
                role = f"excluded: {excluded[col]}"
            else:
                role = f"not used: {spec.dropped_columns.get(col, 'not a feature')}"
        row: dict[str, Any] = {"column": col, "role": role, "dtype": str(values.dtype),
                               "missing_rate": float(values.isna().mean()),
                               "distinct": int(values.nunique(dropna=True)), "auc_alone": None,
                               "auc_non_null": None}
        is_feature = role in ("numeric", "categorical")
        probe = is_feature or (role.startswith("not used") and "identifier" not in role and "date" not in role)
        if probe and len(np.unique(y)) == 2:
            auc = single_column_auc(values, y, numeric=role == "numeric")
            notnull = _auc(y, values.notna().to_numpy(dtype=float))
            row["auc_alone"], row["auc_non_null"] = auc, notnull
            if is_feature and col in allowed:
                problem(INFO, "allowed", col, f"column {col!r} is let through the leakage probes by config "
                                              f"(allow_columns); alone it ranks the label with AUC {auc:.3f}")
            if is_feature and col not in allowed:
                name = shlex.quote(str(col))  # as the command line takes it
                if auc >= checks.leak_auc:
                    problem(FATAL if checks.stop_on_leaks else WARNING, "leak_auc", col,
                            f"column {col!r} alone ranks the label with AUC {auc:.3f} (>= {checks.leak_auc}): almost "
                            f"surely filled in after the outcome; exclude it (--drop {name}, or data.exclude in a "
                            f"config), or allow it if it is known at scoring time (--allow {name})")
                if notnull >= checks.missingness_auc:
                    problem(FATAL if checks.stop_on_leaks else WARNING, "leak_missingness", col,
                            f"whether {col!r} is filled in predicts the label with AUC {notnull:.3f}: it is "
                            f"recorded after the outcome; exclude it (--drop {name}, or data.exclude in a config)")
                elif notnull >= 0.75:
                    problem(WARNING, "missingness", col,
                            f"whether {col!r} is filled in predicts the label with AUC {notnull:.3f}; check that it "
                            f"is filled in before the lead is scored")
        if is_feature and col not in allowed:
            if _OUTCOME_NAME.search(col):
                problem(WARNING, "outcome_name", col, f"column {col!r} is named like an outcome or a pipeline "
                                                      f"stage; confirm it is known when a lead is scored")
            elif _SALES_NAME.search(col):
                problem(WARNING, "sales_assigned_name", col,
                        f"column {col!r} is named like a field that sales fills in after contact (status, tag, "
                        f"quality, grade, profile, owner, score); confirm it is known when a lead is scored")
            elif _SNAPSHOT_NAME.search(col):
                problem(WARNING, "snapshot_name", col,
                        f"column {col!r} looks like a snapshot taken at export time ('last ...'), which may be "
                        f"after the outcome; confirm it is known when a lead is scored")
        if role.startswith("not used: date") and AS_OF in labelled.columns:
            stamps = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
            later = (stamps > labelled[AS_OF]).mean()
            if later > 0.05:
                problem(WARNING, "timestamp_after_as_of", col,
                        f"column {col!r} is later than the lead's as_of in {later:.0%} of leads: it was captured "
                        f"after the scoring time (perhaps after the outcome)")
        rows.append(row)
    if events_after_as_of:
        problem(INFO, "events_after_as_of", "",
                f"{events_after_as_of:,} event rows fall after their lead's as_of; features ignore them "
                f"(point-in-time)")
    if counts.get("immature"):
        problem(INFO, "immature", "", f"{counts['immature']:,} leads left out: their label window has not closed")
    if counts.get("converted_before_created"):
        problem(INFO, "converted_before_created", "",
                f"{counts['converted_before_created']:,} leads left out: their conversion is dated before their "
                f"creation (--exclude-early-conversions)")
    if counts.get("converted_before_as_of"):
        problem(INFO, "converted_before_as_of", "",
                f"{counts['converted_before_as_of']:,} leads left out: converted before as_of")
    summary = {"labelled_leads": len(y), "positives": n_pos, "negatives": n_neg,
               "positive_rate": float(y.mean()) if len(y) else float("nan"),
               "features": len(spec.feature_names), "event_features": has_events,
               **{k: v for k, v in counts.items() if isinstance(v, int | float | str)}}
    sort_problems(problems)
    columns = pd.DataFrame(rows).sort_values("auc_alone", ascending=False, na_position="last", kind="stable")
    return CheckReport(summary, columns.reset_index(drop=True), problems)
