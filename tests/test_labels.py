"""Labels: the window after as_of, and the leads that are left out (converted before, immature)."""

from __future__ import annotations

import pandas as pd
import pytest

from leadscore.features.errors import DataError
from leadscore.features.labels import label_leads, outcome_times
from leadscore.features.spec import LABEL


def _leads():
    created = pd.to_datetime(["2025-01-01", "2025-01-01", "2025-01-01", "2025-01-01", "2025-05-01"], utc=True)
    return pd.DataFrame({"lead_id": ["before", "inside", "after_window", "never", "immature"], "created_at": created})


def _converted():
    outcomes = pd.DataFrame({
        "lead_id": ["before", "inside", "inside", "after_window", "never", "immature"],
        "converted_at": ["2025-01-05", "2025-02-01", "2025-03-01", "2025-06-01", None, "2025-05-20"],
    })
    return outcome_times(outcomes, id_column="lead_id", converted_at="converted_at", source="outcomes.csv")


def test_label_window_and_exclusions():
    out = label_leads(_leads(), _converted(), id_column="lead_id", created_column="created_at", as_of_days=14,
                      window_days=90, data_end=pd.Timestamp("2025-06-30", tz="UTC"))
    labels = dict(zip(out.leads["lead_id"], out.leads[LABEL], strict=True))
    assert labels == {"inside": 1, "after_window": 0, "never": 0}
    assert out.counts == {"leads": 5, "converted_before_as_of": 1, "converted_before_created": 0, "immature": 1,
                          "missing_created_at": 0, "labelled": 3, "positives": 1}
    assert (out.leads["as_of"] == pd.Timestamp("2025-01-15", tz="UTC")).all()


def test_conversion_before_creation_is_an_error_naming_the_rows_or_excluded_and_counted():
    leads = _leads()
    outcomes = pd.DataFrame({"lead_id": ["inside", "never", "after_window"],
                             "converted_at": ["2025-02-01", "2024-12-01", "2025-06-01"]})  # 'never' created 2025-01-01
    converted = outcome_times(outcomes, id_column="lead_id", converted_at="converted_at", source="outcomes.csv")
    kwargs = dict(id_column="lead_id", created_column="created_at", as_of_days=14, window_days=90,
                  data_end=pd.Timestamp("2025-06-30", tz="UTC"), source="leads.csv")
    with pytest.raises(DataError, match=r"leads.csv: 1 lead\(s\) converted before they were created .*row 4\)"):
        label_leads(leads, converted, **kwargs)
    out = label_leads(leads, converted, before_created="exclude", **kwargs)
    assert out.counts["converted_before_created"] == 1 and "never" not in set(out.leads["lead_id"])


def test_outcomes_without_any_conversion_say_single_class_not_a_type_error():
    outcomes = pd.DataFrame({"lead_id": ["inside", "never"], "converted_at": [None, None]})
    converted = outcome_times(outcomes, id_column="lead_id", converted_at="converted_at", source="outcomes.csv")
    with pytest.raises(DataError, match="single class: all 4 labelled leads are not converted"):
        label_leads(_leads(), converted, id_column="lead_id", created_column="created_at", as_of_days=14,
                    window_days=90, data_end=pd.Timestamp("2025-06-30", tz="UTC"))


def test_earliest_conversion_wins():
    assert _converted()["inside"] == pd.Timestamp("2025-02-01", tz="UTC")


def test_single_class_is_an_error():
    with pytest.raises(DataError, match="single class: all 2 labelled leads are not converted"):
        label_leads(_leads().iloc[2:4], _converted(), id_column="lead_id", created_column="created_at",
                    as_of_days=14, window_days=90, data_end=pd.Timestamp("2025-12-31", tz="UTC"),
                    source="leads.csv")


def test_no_closed_window_is_an_error():
    with pytest.raises(DataError, match="no lead has a closed label window"):
        label_leads(_leads(), _converted(), id_column="lead_id", created_column="created_at", as_of_days=14,
                    window_days=90, data_end=pd.Timestamp("2025-02-01", tz="UTC"))


def test_leads_without_a_creation_time_are_left_out_and_counted():
    leads = pd.concat([_leads(), _leads().iloc[[1]].assign(lead_id="inside2")], ignore_index=True)
    converted = pd.concat([_converted(), pd.Series({"inside2": _converted()["inside"]})])
    leads.loc[1, "created_at"] = pd.NaT  # "inside" converted; without a date it must not become a 0
    out = label_leads(leads, converted, id_column="lead_id", created_column="created_at", as_of_days=14,
                      window_days=90, data_end=pd.Timestamp("2025-06-30", tz="UTC"))
    assert "inside" not in set(out.leads["lead_id"])
    assert out.counts["missing_created_at"] == 1 and out.counts["labelled"] == 3
