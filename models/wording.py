"""Reasons in business words: the features of one behaviour grouped into one field, described in a sentence.

The 7/30/90-day counts of pricing-page views are one field ("Viewed the pricing page 3 times in the last 7 days"),
the overall engagement counts, recency, decayed engagement and active days another; each lead column is its own
field ("Employees: 146"). A field's contribution is the sum of its features' contributions, so the fields of a
lead still add up to probability minus base rate; its sentence describes the feature that moved the score most.

The labels and sentence templates are a plain mapping (`default_labels`, overridable per field or event type) that
training stores with the model, so a scoring file reads the same words the model was trained to show.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.features.errors import ConfigError
from leadscore.features.spec import OTHER, FeatureSpec, event_column_name

ENGAGEMENT = "engagement"

# Sentences for the event types of common marketing automation exports: {times} is "once", "twice", "3 times".
_EVENT_SENTENCES = {
    "page_view": ("Visited the website {times} in the last {days} days",
                  "Has not visited the website in the last {days} days"),
    "pricing_page_view": ("Viewed the pricing page {times} in the last {days} days",
                          "Has not viewed the pricing page in the last {days} days"),
    "email_open": ("Opened an email {times} in the last {days} days",
                   "Has not opened an email in the last {days} days"),
    "email_click": ("Clicked a link in an email {times} in the last {days} days",
                    "Has not clicked an email link in the last {days} days"),
    "content_download": ("Downloaded content {times} in the last {days} days",
                         "Has not downloaded content in the last {days} days"),
    "webinar_attended": ("Attended a webinar {times} in the last {days} days",
                         "Has not attended a webinar in the last {days} days"),
    "offline_event_attended": ("Attended an event in person {times} in the last {days} days",
                               "Has not attended an event in person in the last {days} days"),
    "livestream_watched": ("Watched a livestream {times} in the last {days} days",
                           "Has not watched a livestream in the last {days} days"),
    "demo_request": ("Requested a demo {times} in the last {days} days",
                     "Has not requested a demo in the last {days} days"),
    "form_submit": ("Submitted a form {times} in the last {days} days",
                    "Has not submitted a form in the last {days} days"),
    "unsubscribe": ("Unsubscribed {times} in the last {days} days",
                    "Has not unsubscribed in the last {days} days"),
    "email_bounce": ("Emails bounced {times} in the last {days} days",
                     "No email bounced in the last {days} days"),
}


def humanise(name: str) -> str:
    """'annual_revenue' -> 'Annual revenue', 'leadSource' -> 'Lead source'."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", str(name))
    text = re.sub(r"[_\s]+", " ", text).strip()
    return text[:1].upper() + text[1:].lower() if text else str(name)


def default_labels(spec: FeatureSpec, overrides: Mapping | None = None) -> dict:
    """The label map a model ships with: a label per field and, per event type, the sentences for a count and for
    none. `overrides` (a config's `reasons:` section) replaces any of them: {"fields": {...}, "events": {...}}."""
    fields = {name: humanise(name) for name in spec.lead_feature_names}
    events = {}
    for event_type in spec.event_types if spec.has_events else ():
        key = event_column_name(event_type)
        fields[key] = humanise(event_type)
        count, none = _EVENT_SENTENCES.get(key, (f"{humanise(event_type)}: {{count}} in the last {{days}} days",
                                                 f"No {humanise(event_type).lower()} in the last {{days}} days"))
        events[key] = {"count": count, "none": none}
    if spec.has_events:
        fields[ENGAGEMENT] = "Engagement"
    labels = {"fields": fields, "events": events}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {"fields", "events"})
    if unknown:
        raise ConfigError(f"reasons: unknown key(s) {unknown}; allowed: ['events', 'fields']")
    for key, value in dict(overrides.get("fields") or {}).items():
        if not isinstance(value, str):
            raise ConfigError(f"reasons.fields.{key}: expected a label (text), got {type(value).__name__}")
        labels["fields"][event_column_name(key) if key in spec.event_types else str(key)] = value
    for key, value in dict(overrides.get("events") or {}).items():
        if not isinstance(value, Mapping) or set(value) - {"count", "none"} or \
                not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"reasons.events.{key}: expected {{count: text, none: text}}")
        for form, text in value.items():
            try:
                text.format(times="3 times", count="3", days=7)
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(f"reasons.events.{key}.{form}: {text!r} may use only {{times}}, {{count}} and "
                                  f"{{days}} ({exc})") from exc
        name = event_column_name(key)
        labels["events"][name] = {**labels["events"].get(name, {}), **dict(value)}
    return labels


def _code_words(value: str) -> str:
    """A category written as a code reads as words ('company_website' -> 'company website'); other text as is."""
    return value.replace("_", " ") if re.fullmatch(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+", value) else value


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n:,} times")


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 1 else f"{value:.3g}"


@dataclass(frozen=True)
class _Member:
    field: int
    kind: str  # "count" (an event type's window), "engagement", "recency", "decayed", "active", "lead"
    key: str = ""  # the event type's column name, or the lead column
    days: int = 0


class ReasonWording:
    """Groups features into business fields and words a field's reason from its leading feature and value."""

    def __init__(self, spec: FeatureSpec, labels: Mapping | None = None) -> None:
        self.spec = spec
        self.labels = default_labels(spec) if labels is None else {
            "fields": {**default_labels(spec)["fields"], **dict(labels.get("fields") or {})},
            "events": {**default_labels(spec)["events"], **{k: dict(v) for k, v in
                                                           dict(labels.get("events") or {}).items()}}}
        names = list(spec.feature_names)
        fields: list[str] = []
        members: list[_Member] = []

        def field_index(name: str) -> int:
            if name not in fields:
                fields.append(name)
            return fields.index(name)

        for name in spec.lead_feature_names:
            members.append(_Member(field_index(name), "lead", name))
        max_window = max(spec.windows) if spec.windows else 0
        if spec.has_events:
            for event_type in spec.event_types:
                key = event_column_name(event_type)
                for w in spec.windows:
                    members.append(_Member(field_index(key), "count", key, int(w)))
            for w in spec.windows:
                members.append(_Member(field_index(ENGAGEMENT), "engagement", "", int(w)))
            members.append(_Member(field_index(ENGAGEMENT), "recency"))
            members.append(_Member(field_index(ENGAGEMENT), "decayed"))
            members.append(_Member(field_index(ENGAGEMENT), "active", "", int(max_window)))
        if len(members) != len(names):  # pragma: no cover - the spec's own feature list, in its order
            raise ValueError("feature spec and reason fields disagree")
        self.fields = tuple(fields)
        self.feature_names = tuple(names)
        self.members = tuple(members)
        self.field_of = np.asarray([m.field for m in members], dtype=np.int64)

    def field_label(self, field: str) -> str:
        return str(self.labels["fields"].get(field, humanise(field)))

    def grouped(self, contributions: np.ndarray) -> np.ndarray:
        """Per-row contribution of each field (the sum of its features'), columns in `fields` order."""
        contributions = np.asarray(contributions, dtype="float64")
        out = np.zeros((contributions.shape[0], len(self.fields)), dtype="float64")
        for g in range(len(self.fields)):
            out[:, g] = contributions[:, self.field_of == g].sum(axis=1)
        return out

    def leading(self, contributions: np.ndarray, fields: np.ndarray) -> np.ndarray:
        """Per row, the feature of `fields[row]` with the largest contribution by size (the first on a tie)."""
        size = np.abs(np.asarray(contributions, dtype="float64"))
        out = np.zeros(len(fields), dtype=np.int64)
        for g in np.unique(fields):
            rows = np.flatnonzero(fields == g)
            cols = np.flatnonzero(self.field_of == g)
            out[rows] = cols[np.argmax(size[np.ix_(rows, cols)], axis=1)]
        return out

    def sentence(self, feature: int, value) -> str:
        """The words for one feature's value ('Viewed the pricing page 3 times in the last 7 days')."""
        m = self.members[feature]
        missing = value is None or value is pd.NA or (isinstance(value, float | np.floating) and np.isnan(value))
        if m.kind == "lead":
            label = self.field_label(m.key)
            if missing:
                return f"{label}: not given"
            if isinstance(value, str):
                return f"{label}: {'a rare value' if value == OTHER else _code_words(value)}"
            return f"{label}: {_number(float(value))}"
        n = 0 if missing else int(round(float(value)))
        if m.kind == "count":
            templates = self.labels["events"].get(m.key, {})
            key = "count" if n else "none"
            text = templates.get(key) or (f"{self.field_label(m.key)}: {{count}} in the last {{days}} days"
                                          if n else f"No {self.field_label(m.key).lower()} in the last {{days}} days")
            return text.format(times=_times(n), count=f"{n:,}", days=m.days)
        if m.kind == "engagement":
            return f"Engaged {_times(n)} in the last {m.days} days" if n else \
                f"No engagement in the last {m.days} days"
        if m.kind == "recency":
            if missing:
                return "No activity on record"
            days = float(value)
            if days < 1:
                return "Last active today"
            return "Last active yesterday" if days < 2 else f"Last active {_number(round(days))} days ago"
        if m.kind == "decayed":
            return f"Recent engagement score {_number(round(float(value), 1))}" if not missing and float(value) \
                else "No recent engagement"
        return f"Active on {n:,} days of the last {m.days}" if n else f"No active days in the last {m.days}"

    def sentences(self, features: np.ndarray, values: np.ndarray) -> np.ndarray:
        """`sentence` of each (feature, value) pair, worded once per distinct pair."""
        out = np.empty(len(features), dtype=object)
        for f in np.unique(features):
            rows = np.flatnonzero(features == f)
            codes, uniques = pd.factorize(pd.Series(values[rows], dtype=object), use_na_sentinel=True)
            words = np.asarray([self.sentence(int(f), u) for u in uniques] + [self.sentence(int(f), None)],
                               dtype=object)
            out[rows] = words[np.where(codes < 0, len(uniques), codes)]
        return out
