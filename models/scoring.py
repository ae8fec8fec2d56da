"""The `Scorer` protocol: anything that scores a lead list, so comparing two scorers on the same leads is one call.

Implemented by the model (`leadscore.serve.predictor.Predictor`, over `models.scorer.ModelScorer`) and by the
manual rules (`models.rules.RuleScorer` for a YAML rule set, `models.rules.ColumnRuleScorer` for a CRM's
score column); `leadscore.training.compare.compare_scorers` takes any two.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pandas as pd


@runtime_checkable
class Scorer(Protocol):
    """Scores raw leads (with their events) as of each lead's `as_of` column, or the one `as_of` given."""

    def score(self, leads: pd.DataFrame, events: pd.DataFrame | None = None,
              as_of: pd.Timestamp | str | None = None, *, reasons: bool = True) -> pd.DataFrame:
        """One row per scored lead: the lead id first, then as_of, score (higher = more likely), band and
        optionally probability and reason_1..k columns."""
        ...
