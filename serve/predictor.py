"""Load a model by MLflow URI or path and score leads (with their events) as of a date."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from leadscore.features.build import build_lead_frame, prepare_leads, type_events
from leadscore.features.config import BandConfig
from leadscore.features.spec import AS_OF, LeadFrame
from leadscore.models.bundle import Bands, ModelBundle
from leadscore.models.registry import load_bundle
from leadscore.models.scorer import ModelScorer


@dataclass(frozen=True)
class Scored:
    """Scores for the valid rows, the rejected rows with a reason, and counters (unseen values, ...)."""

    scores: pd.DataFrame
    rejects: pd.DataFrame
    stats: dict
    features: pd.DataFrame | None = None  # the readable features of the scored rows (for the drift check)


class Predictor:
    """A loaded model that scores raw leads: lead_id, probability, score, band, base_rate, top reasons."""

    def __init__(self, bundle: ModelBundle, *, n_reasons: int = 3, bands: BandConfig | None = None) -> None:
        custom = None
        if bands is not None and bands.cutoffs is not None:
            custom = Bands(tuple(bands.names), tuple(int(round(c)) for c in bands.cutoffs))
        self.bundle = bundle
        self.scorer = ModelScorer(bundle, n_reasons=n_reasons, bands=custom)

    @classmethod
    def load(cls, uri: str | os.PathLike, *, tracking_uri: str | None = None, n_reasons: int = 3,
             bands: BandConfig | None = None) -> Predictor:
        """From `models:/lead-conversion@champion`, `runs:/<id>/model`, or a local bundle/model folder."""
        return cls(load_bundle(uri, tracking_uri=tracking_uri), n_reasons=n_reasons, bands=bands)

    @property
    def spec(self):
        return self.bundle.spec

    def _frame(self, leads: pd.DataFrame, events: pd.DataFrame | None, as_of, *, source: str, events_source: str,
               dedupe_events: bool = False, event_store=None, event_part: int | None = None
               ) -> tuple[LeadFrame, pd.DataFrame, pd.DataFrame]:
        ok, stamps, rejects, stats = prepare_leads(leads, self.spec, as_of, source=source)
        if event_store is not None:  # a log loaded (and deduplicated) once for a whole streamed list
            frame = build_lead_frame(ok, None, self.spec, stamps, stats=stats, event_store=event_store,
                                     event_part=event_part)
            return frame, ok, rejects
        typed_events = None
        if self.spec.has_events and events is not None:
            typed_events = type_events(events, self.spec, source=events_source)
            dupes = typed_events.duplicated(["lead_id", "ts", "type"])
            if dupes.any():
                stats["duplicate_events"] = int(dupes.sum())
                if dedupe_events:
                    typed_events = typed_events.loc[~dupes]
                    stats["duplicate_events_dropped"] = int(dupes.sum())
        return build_lead_frame(ok, typed_events, self.spec, stamps, stats=stats), ok, rejects

    def features(self, leads: pd.DataFrame, events: pd.DataFrame | None = None,
                 as_of: pd.Timestamp | str | None = None, *, source: str = "leads") -> LeadFrame:
        """The model's point-in-time features for valid leads (what it scores), e.g. to fit a scorecard."""
        return self._frame(leads, events, as_of, source=source, events_source="events")[0]

    def score_detailed(
        self,
        leads: pd.DataFrame,
        events: pd.DataFrame | None = None,
        as_of: pd.Timestamp | str | None = None,
        *,
        reasons: bool = True,
        keep_columns: Sequence[str] = (),
        source: str = "leads",
        events_source: str = "events",
        dedupe_events: bool = False,
        event_store=None,
        event_part: int | None = None,
    ) -> Scored:
        """Score leads; rows that cannot be scored come back in `rejects` with a reason (nothing is lost).

        `as_of`: one time for every lead; without it, the leads' `as_of` column, else now (UTC).
        `dedupe_events`: drop repeated event rows (same lead, time and type) instead of counting them twice.
        `event_store`, `event_part`: the events from a log kept on disk (`EventStore`), for the leads' chunk.
        """
        frame, ok, rejects = self._frame(leads, events, as_of, source=source, events_source=events_source,
                                         dedupe_events=dedupe_events, event_store=event_store,
                                         event_part=event_part)
        scores = self.scorer.score_frame(frame, reasons=reasons)
        scores.insert(1, AS_OF, frame.as_of.array)  # the array as it is: no Timestamp object per cell
        for col in keep_columns:
            if col in ok.columns and col not in scores.columns:
                scores[col] = ok[col].array
        return Scored(scores, rejects, {**frame.stats, "scored_rows": len(scores), "rejected_rows": len(rejects)},
                      frame.features)

    def score(self, leads: pd.DataFrame, events: pd.DataFrame | None = None,
              as_of: pd.Timestamp | str | None = None, *, reasons: bool = True) -> pd.DataFrame:
        """One row per valid lead: lead_id, as_of, probability, score, band, base_rate, reason_1..3."""
        return self.score_detailed(leads, events, as_of, reasons=reasons).scores
