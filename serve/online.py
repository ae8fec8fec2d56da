"""Scoring a few leads given as records (the HTTP API's path): the batch rules, without pandas per call.

A batch run types columns with pandas and aggregates events in DuckDB, ~90 ms of fixed cost per call. Here one
lead is typed cell by cell with the scalar twins of the batch parsers (`parse_number`, the spec's `categorise`
rule, `implausible`), its inline events are aggregated in plain Python, and the encoded row goes straight to the
model. Tests hold the result equal to `leadscore score` on the same leads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from leadscore.features.io import parse_number
from leadscore.features.spec import AS_OF, OTHER
from leadscore.models.explain import probability_contributions
from leadscore.models.scorer import (
    BASE_RATE,
    ModelScorer,
    assign_bands,
    score_from_probability,
)

_SLASHED = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{2,4})")
_DAY_US = 86_400_000_000


class LeadError(ValueError):
    """One lead cannot be scored: which lead (0-based), which field, and why."""

    def __init__(self, index: int, field: str, message: str) -> None:
        super().__init__(f"lead {index}: {field}: {message}")
        self.index, self.field, self.message = index, field, message


def _timestamp(value, *, what: str, index: int) -> pd.Timestamp | None:
    """A UTC timestamp truncated to microseconds, as the batch path stores it; None when missing."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        stamp = pd.Timestamp(value)
    else:
        text = str(value).strip()
        if not text:
            return None
        try:  # ISO 8601, what an API client sends: the standard library reads it ~50x faster than pandas
            stamp = pd.Timestamp(datetime.fromisoformat(text))
        except ValueError:
            match = _SLASHED.match(text)
            try:
                stamp = pd.to_datetime(text, utc=True, format="mixed", dayfirst=bool(match and int(match[1]) > 12))
            except (ValueError, TypeError, OverflowError) as exc:
                raise LeadError(index, what, f"cannot parse {text!r} as a date/time") from exc
    if pd.isna(stamp):
        raise LeadError(index, what, f"cannot parse {value!r} as a date/time")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.floor("us")


def _micros(stamp: pd.Timestamp) -> int:
    return stamp.value // 1000


@dataclass(frozen=True)
class OnlineResult:
    """Scored leads as plain records (id, as_of, probability, score, band, base_rate, reasons) and counters."""

    leads: list[dict]
    stats: dict
    rows: list[list] | None = None  # readable feature values per lead, in the spec's order (for drift)


class OnlineScorer:
    """Score lead records with inline events exactly as `Predictor.score` scores the same rows in a file."""

    def __init__(self, scorer: ModelScorer, *, num_threads: int = 1) -> None:
        self.scorer = scorer
        spec = scorer.spec
        model = scorer.bundle.model
        for part in (model, getattr(model, "tree", None)):
            if hasattr(part, "num_threads"):
                part.num_threads = num_threads
            if hasattr(part, "shap_tables") and part.shap_tables() is not None:
                # Compile (or load the cached machine code of) the kernels now, not on the first request.
                probe = np.full((1, len(spec.feature_names)), np.nan)
                part.margin(probe)
                part.contributions(probe)
        self.spec = spec
        self._codes = {col: {v: float(i) for i, v in enumerate(vocab)} for col, vocab in spec.categorical_vocab.items()}
        self._na = set(spec.na_values)
        self._types = {t: i for i, t in enumerate(spec.event_types)}
        self._negative = set(spec.negative_event_types)
        self._windows = list(spec.windows)
        self._names = list(spec.feature_names)
        self._lead_names = list(spec.lead_feature_names)

    # -- typing ------------------------------------------------------------------------------------------------

    def _number(self, name: str, value, index: int, stats: dict) -> float:
        number = parse_number(value, decimal=self.spec.decimal, na_values=self._na)
        if number is None:
            raise LeadError(index, name, f"expected a number, found {value!r}")
        if self.spec.implausible(name, np.array([number]))[0]:
            stats[f"implausible:{name}"] = stats.get(f"implausible:{name}", 0) + 1
            return float("nan")
        return number

    def _category(self, name: str, value, stats: dict) -> str | None:
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            return None
        text = str(value).strip()
        if text == "" or text in self._na:
            return None
        if text in self._codes[name]:
            return text
        stats[f"unseen_category:{name}"] = stats.get(f"unseen_category:{name}", 0) + 1
        return OTHER if OTHER in self._codes[name] else None

    def _events(self, events: Sequence[Mapping] | None, as_of: pd.Timestamp, index: int, stats: dict
                ) -> list[float]:
        """The event features of one lead, by the rules of `features.build.event_features`."""
        spec = self.spec
        n_types, windows = len(spec.event_types), self._windows
        counts = [0.0] * (n_types * len(windows))
        engaged_counts = [0.0] * len(windows)
        last, decayed, days = math.nan, 0.0, set()
        max_window = max(windows) if windows else 0
        cutoff = _micros(as_of)
        used = after = unknown = 0
        for k, event in enumerate(events or ()):
            if not isinstance(event, Mapping):
                raise LeadError(index, f"events[{k}]", "an event is an object with timestamp and type")
            ts = _timestamp(event.get("timestamp"), what=f"events[{k}].timestamp", index=index)
            kind = event.get("type", event.get(spec.event_type))
            if ts is None or kind is None or str(kind).strip() == "":
                raise LeadError(index, f"events[{k}]", "an event needs a timestamp and a type")
            kind = str(kind).strip()
            micros = _micros(ts)
            if micros > cutoff:
                after += 1
                continue
            used += 1
            slot = self._types.get(kind)
            if slot is None:
                unknown += 1
                continue
            age = (cutoff - micros) / float(_DAY_US)
            for w, window in enumerate(windows):
                if age < window:
                    counts[slot * len(windows) + w] += 1.0
            if kind in self._negative:
                continue
            for w, window in enumerate(windows):
                if age < window:
                    engaged_counts[w] += 1.0
            last = age if math.isnan(last) else min(last, age)
            decayed += math.pow(0.5, age / spec.half_life_days)
            if age < max_window:
                days.add(micros // _DAY_US)
        n_events = len(events or ())
        stats["leads_matched_by_events"] = stats.get("leads_matched_by_events", 0) + (n_events > 0)
        stats["leads_with_events"] = stats.get("leads_with_events", 0) + (used - unknown > 0)
        stats["events_used"] = stats.get("events_used", 0) + used
        stats["events_after_as_of_ignored"] = stats.get("events_after_as_of_ignored", 0) + after
        stats["events_unknown_type_ignored"] = stats.get("events_unknown_type_ignored", 0) + unknown
        return counts + engaged_counts + [last, decayed, float(len(days))]

    def features(self, lead: Mapping, index: int, as_of, stats: dict) -> tuple[str, pd.Timestamp, list]:
        """(lead id, as_of, readable feature values in the spec's order) of one record."""
        spec = self.spec
        raw_id = lead.get(spec.id_column)
        lead_id = None if raw_id is None else str(raw_id).strip()
        if not lead_id:
            raise LeadError(index, spec.id_column, "missing lead id")
        created = _timestamp(lead.get(spec.created_column), what=spec.created_column, index=index)
        given = lead.get(AS_OF)
        given = as_of if given is None else given
        stamp = _timestamp(given, what=AS_OF, index=index) if given is not None else None
        if stamp is None:
            stamp = pd.Timestamp.now(tz="UTC").floor("us")
        if created is not None and stamp < created:
            raise LeadError(index, AS_OF, f"{stamp:%Y-%m-%d %H:%M} is before the lead's creation "
                                          f"({spec.created_column!r} {created:%Y-%m-%d %H:%M})")
        values: list = []
        for name in spec.numeric_columns:
            if name not in lead:
                stats[f"missing_column:{name}"] = stats.get(f"missing_column:{name}", 0) + 1
            values.append(self._number(name, lead.get(name), index, stats))
        for name in spec.categorical_vocab:
            if name not in lead:
                stats[f"missing_column:{name}"] = stats.get(f"missing_column:{name}", 0) + 1
            values.append(self._category(name, lead.get(name), stats))
        if spec.has_events:
            values.extend(self._events(lead.get("events"), stamp, index, stats))
        return lead_id, stamp, values

    def encode(self, rows: list[list]) -> np.ndarray:
        """The model matrix of readable rows, as `FeatureSpec.encode` makes it."""
        X = np.full((len(rows), len(self._names)), np.nan)
        n_num = len(self.spec.numeric_columns)
        cats = list(self.spec.categorical_vocab)
        for i, row in enumerate(rows):
            X[i, :n_num] = row[:n_num]
            for j, name in enumerate(cats):
                value = row[n_num + j]
                if value is not None:
                    X[i, n_num + j] = self._codes[name].get(value, np.nan)
            X[i, n_num + len(cats):] = row[n_num + len(cats):]
        return X

    # -- scoring -----------------------------------------------------------------------------------------------

    def score(self, leads: Sequence[Mapping], *, as_of=None, reasons: bool = True) -> OnlineResult:
        """Score records; an invalid record raises LeadError naming it and the field (nothing is scored)."""
        stats: dict = {}
        parsed = [self.features(lead, i, as_of, stats) for i, lead in enumerate(leads)]
        if not parsed:
            return OnlineResult([], stats)
        rows = [values for _, _, values in parsed]
        X = self.encode(rows)
        bundle = self.scorer.bundle
        k = min(self.scorer.n_reasons, len(self.scorer.wording.fields)) if reasons else 0
        if k:
            from leadscore.models.explain import margin_contributions

            base, contrib, p = probability_contributions(margin_contributions(bundle.model, X),
                                                         bundle.calibrator.predict)
            table = self.scorer.reason_table(np.asarray(rows, dtype=object).reshape(len(rows), -1), contrib)
        else:
            p = bundle.calibrator.predict(bundle.model.margin(X))
        score = score_from_probability(p)
        bands = assign_bands(score, self.scorer.bands)
        out = []
        for i, (lead_id, stamp, _) in enumerate(parsed):
            record = {self.spec.id_column: lead_id, AS_OF: stamp.isoformat(), "probability": float(p[i]),
                      "score": int(score[i]), "band": str(bands[i])}
            if k:
                record[BASE_RATE] = float(base[i])
                record["reasons"] = [
                    {"field": str(table[f"reason_{j}_field"][i]), "feature": str(table[f"reason_{j}_feature"][i]),
                     "value": str(table[f"reason_{j}_value"][i]),
                     "contribution": float(table[f"reason_{j}_contribution"][i]),
                     "text": str(table[f"reason_{j}"][i])} for j in range(1, k + 1)]
            out.append(record)
        return OnlineResult(out, stats, rows)

