"""FeatureSpec and LeadFrame: the frozen description of a model's inputs, and a validated frame that carries it."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SPEC_VERSION = 2
MAX_EXACT = 2.0**53  # numbers from here on are not exact in float64: not a lead attribute anyone measured


def signed_log(x):
    """sign(x) * log1p(|x|): a scale on which counts and amounts spread evenly."""
    x = np.asarray(x, dtype="float64")
    return np.sign(x) * np.log1p(np.abs(x))
AS_OF = "as_of"
LABEL = "label"
# The pooled level of a category column: values seen too rarely in training, and values never seen there.
OTHER = "(other)"


def event_column_name(event_type: str) -> str:
    """A safe column name for an event type ('Pricing Page View' -> 'pricing_page_view')."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", str(event_type)).strip("_").lower()
    return name or "event"


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to turn raw leads (and events) into model inputs, saved inside the model.

    Categorical columns carry a fixed vocabulary: values outside it become missing (and are counted).
    """

    id_column: str
    created_column: str
    as_of_days: int
    label_window_days: int
    numeric_columns: tuple[str, ...]
    categorical_vocab: dict[str, tuple[str, ...]]
    event_types: tuple[str, ...]
    negative_event_types: tuple[str, ...]
    windows: tuple[int, ...]
    half_life_days: float
    event_lead_id: str = "lead_id"
    event_time: str = "timestamp"
    event_type: str = "event_type"
    has_events: bool = True
    dropped_columns: dict[str, str] = field(default_factory=dict)
    na_values: tuple[str, ...] = ()
    decimal: str | None = None
    # Observed [min, max] of each number column in training: far outside it a value is not trusted.
    numeric_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    # What training's input looked like (share of leads with events, ...), to tell a scoring file that differs.
    profile: dict[str, float] = field(default_factory=dict)
    version: int = SPEC_VERSION

    @property
    def categorical_columns(self) -> tuple[str, ...]:
        return tuple(self.categorical_vocab)

    @property
    def event_feature_names(self) -> tuple[str, ...]:
        if not self.has_events:
            return ()
        names = [f"{event_column_name(t)}_{w}d" for t in self.event_types for w in self.windows]
        names += [f"engagement_events_{w}d" for w in self.windows]
        names += ["days_since_last_activity", "decayed_engagement", "active_days"]
        return tuple(names)

    @property
    def lead_feature_names(self) -> tuple[str, ...]:
        return self.numeric_columns + self.categorical_columns

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.lead_feature_names + self.event_feature_names

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Lead columns a scoring file must (or may) carry, besides the id."""
        return self.lead_feature_names

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # A list of pairs, not a mapping: the column order is the model's feature order and must survive
        # any JSON writer that sorts keys.
        out["categorical_vocab"] = [[k, list(v)] for k, v in self.categorical_vocab.items()]
        out["numeric_ranges"] = {k: [lo, hi] for k, (lo, hi) in self.numeric_ranges.items()}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureSpec:
        values = dict(values)
        if values.get("version") == 1:  # version 1 had no pooled level; its vocabularies read unchanged
            values["version"] = SPEC_VERSION
        if values.get("version") != SPEC_VERSION:
            raise ValueError(f"feature spec version {values.get('version')} is not supported (need {SPEC_VERSION})")
        for key in ("numeric_columns", "event_types", "negative_event_types", "windows", "na_values"):
            values[key] = tuple(values.get(key, ()))
        values["categorical_vocab"] = {k: tuple(v) for k, v in values["categorical_vocab"]}
        ranges = values.get("numeric_ranges", {})
        values["numeric_ranges"] = {k: (float(lo), float(hi)) for k, (lo, hi) in ranges.items()}
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        return cls.from_dict(json.loads(text))

    def categorise(self, name: str, values: pd.Series) -> tuple[pd.Series, int]:
        """Category cells as the model reads them: known values kept, others pooled (or missing). Returns the
        readable column and how many present cells were not in the vocabulary."""
        vocab = self.categorical_vocab[name]
        text = values.astype("string").str.strip()
        text = text.mask(text == "")
        known = list(vocab)
        unseen = text.notna() & ~text.isin(known)
        fill = OTHER if OTHER in vocab else pd.NA
        return text.where(~unseen, fill).astype("object"), int(unseen.sum())

    def plausible(self, name: str, numbers: pd.Series) -> tuple[pd.Series, pd.Series]:
        """Numbers the model can trust: (kept, dropped mask). One rule for training and scoring.

        Not values: inf, -inf and magnitudes from 2**53 on (beyond exact float64 integers). Far outside training:
        a sign never seen there, or more than the whole observed range beyond it on a signed log scale
        (employees seen in [1, 10,000] are trusted up to ~5e7, never below 0).
        """
        values = numbers.to_numpy(dtype="float64", na_value=np.nan)
        bad = self.implausible(name, values)
        kept = pd.Series(np.where(bad, np.nan, values), index=numbers.index)
        return kept, pd.Series(bad, index=numbers.index)

    def implausible(self, name: str, values: np.ndarray) -> np.ndarray:
        """The rule of `plausible` on a float array: True where a present value is not to be trusted."""
        bad = ~np.isnan(values) & (~np.isfinite(values) | (np.abs(values) >= MAX_EXACT))
        if name in self.numeric_ranges:
            lo, hi = self.numeric_ranges[name]
            t, t_lo, t_hi = signed_log(values), signed_log(lo), signed_log(hi)
            width = max(t_hi - t_lo, 1.0)
            with np.errstate(invalid="ignore"):
                far = (t < t_lo - width) | (t > t_hi + width)
                if lo >= 0:
                    far |= values < 0
            bad |= far & ~np.isnan(values)
        return bad

    def encode(self, features: pd.DataFrame) -> pd.DataFrame:
        """Model matrix: float64 columns in `feature_names` order, categoricals as vocabulary codes (NaN = missing)."""
        out: dict[str, np.ndarray] = {}
        for name in self.feature_names:
            col = features[name]
            if name in self.categorical_vocab:
                vocab = self.categorical_vocab[name]
                lookup = {value: float(i) for i, value in enumerate(vocab)}
                # Values outside the vocabulary (never seen in training) become missing.
                out[name] = col.astype("object").map(lookup).to_numpy(dtype="float64", na_value=np.nan)
            else:
                out[name] = pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        return pd.DataFrame(out, index=features.index)

    def decode_value(self, name: str, value: float) -> Any:
        """Readable value of an encoded feature (category name, number, or None for missing)."""
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        if name in self.categorical_vocab:
            return self.categorical_vocab[name][int(value)]
        return float(value)


@dataclass(frozen=True)
class LeadFrame:
    """A validated frame of leads as of a date: id, as_of, readable features and (for training) a label."""

    frame: pd.DataFrame
    spec: FeatureSpec
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> pd.Series:
        return self.frame[self.spec.id_column]

    @property
    def as_of(self) -> pd.Series:
        return self.frame[AS_OF]

    @property
    def features(self) -> pd.DataFrame:
        return self.frame[list(self.spec.feature_names)]

    @property
    def X(self) -> pd.DataFrame:  # noqa: N802 - the conventional name
        return self.spec.encode(self.frame)

    @property
    def y(self) -> np.ndarray:
        return self.frame[LABEL].to_numpy(dtype="int8")

    def __len__(self) -> int:
        return len(self.frame)

    def subset(self, mask: np.ndarray | pd.Series) -> LeadFrame:
        """Rows selected by a boolean mask, same spec."""
        return LeadFrame(self.frame.loc[np.asarray(mask)].reset_index(drop=True), self.spec, dict(self.stats))
