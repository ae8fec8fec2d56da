"""Tests of the synthetic demo world: determinism, schema, calibration of the truth, the deliberate leak."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.demo_world import EVENT_TYPES, STAGES, TEAMS, DemoWorld, generate_demo_world, write_demo_world
from leadscore.features.io import read_table

N = 6_000

LEAD_COLUMNS = [
    "lead_id",
    "created_at",
    "company",
    "industry",
    "employees",
    "annual_revenue",
    "country",
    "is_multinational",
    "job_title",
    "seniority",
    "lead_source",
]


@pytest.fixture(scope="module")
def world() -> DemoWorld:
    return generate_demo_world(N, seed=7, n_fresh=800)


@pytest.fixture(scope="module")
def labelled(world: DemoWorld) -> pd.DataFrame:
    """One row per lead: truth, label within the window, maturity, source, post-as_of event count."""
    window = pd.Timedelta(days=world.label_window_days)
    frame = world.leads[["lead_id", "lead_source"]].merge(world.truth, on="lead_id").merge(
        world.outcomes, on="lead_id"
    )
    frame["mature"] = frame["as_of"] + window <= world.data_end
    frame["early"] = frame["true_probability"].isna()
    conv = frame["converted_at"]
    frame["label"] = ((conv > frame["as_of"]) & (conv <= frame["as_of"] + window)).fillna(False).astype(bool)
    ev = world.events.merge(frame[["lead_id", "as_of"]], on="lead_id")
    post = ev[ev["timestamp"] > ev["as_of"]].groupby("lead_id").size()
    frame["post_events"] = post.reindex(frame["lead_id"]).fillna(0).to_numpy()
    return frame


def _utc(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.DatetimeTZDtype) and str(series.dtype.tz) == "UTC"


def test_same_seed_identical_different_seed_differs(world: DemoWorld) -> None:
    again = generate_demo_world(N, seed=7, n_fresh=800)
    for name in ("leads", "events", "outcomes", "truth", "fresh_leads", "fresh_events", "fresh_truth", "stages",
                 "pipeline"):
        pd.testing.assert_frame_equal(getattr(world, name), getattr(again, name), obj=name)
    assert world.data_end == again.data_end
    other = generate_demo_world(N, seed=8, n_fresh=800)
    assert not world.leads.equals(other.leads)
    assert not world.events.equals(other.events)


def test_schema_and_dtypes(world: DemoWorld) -> None:
    assert list(world.leads.columns) == LEAD_COLUMNS
    assert list(world.events.columns) == ["lead_id", "timestamp", "event_type"]
    assert list(world.outcomes.columns) == ["lead_id", "converted_at"]
    assert list(world.truth.columns) == ["lead_id", "as_of", "true_probability"]
    assert list(world.fresh_leads.columns) == [*LEAD_COLUMNS, "as_of"]
    assert list(world.fresh_truth.columns) == ["lead_id", "as_of", "true_probability"]
    for frame, col in [
        (world.leads, "created_at"),
        (world.events, "timestamp"),
        (world.outcomes, "converted_at"),
        (world.truth, "as_of"),
        (world.fresh_leads, "as_of"),
        (world.fresh_events, "timestamp"),
    ]:
        assert _utc(frame[col]), col
    assert world.data_end.tz is not None and str(world.data_end.tz) == "UTC"
    for col in ("lead_id", "company", "industry", "country", "job_title", "seniority", "lead_source"):
        assert pd.api.types.is_string_dtype(world.leads[col].dtype), col
    assert pd.api.types.is_string_dtype(world.events["lead_id"].dtype)
    assert pd.api.types.is_integer_dtype(world.leads["employees"].dtype)
    assert pd.api.types.is_bool_dtype(world.leads["is_multinational"].dtype)
    assert world.leads["lead_id"].is_unique
    assert world.leads["lead_id"].str.fullmatch(r"L\d{7}").all()
    assert len(world.outcomes) == len(world.truth) == len(world.leads)
    assert world.leads["employees"].between(1, 100_000).all()
    # Real exports have gaps.
    for col, low, high in [("annual_revenue", 0.02, 0.09), ("country", 0.01, 0.06), ("industry", 0.01, 0.08),
                           ("seniority", 0.01, 0.06)]:
        assert low < world.leads[col].isna().mean() < high, col
    assert world.leads["lead_source"].notna().all()
    assert world.leads["company"].nunique() > 0.8 * N


def test_events_consistent_with_leads(world: DemoWorld) -> None:
    ev = world.events
    assert ev["lead_id"].isin(world.leads["lead_id"]).all()
    assert ev["event_type"].isin(EVENT_TYPES).all()
    assert set(ev["event_type"].unique()) == set(EVENT_TYPES)
    created = ev["lead_id"].map(world.leads.set_index("lead_id")["created_at"])
    assert (ev["timestamp"] >= created).all()
    assert (ev["timestamp"] <= world.data_end).all()
    assert (ev["timestamp"].dt.microsecond == 0).all()
    # Sorted by lead then time.
    order = ev.sort_values(["lead_id", "timestamp"], kind="stable").index
    assert (order == ev.index).all()
    per_lead = len(ev) / len(world.leads)
    assert 10 <= per_lead <= 25
    counts = ev["event_type"].value_counts()
    assert counts.index[0] in ("page_view", "email_open")
    assert counts["demo_request"] < counts["email_click"]


def test_time_span_and_maturity(world: DemoWorld, labelled: pd.DataFrame) -> None:
    created = world.leads["created_at"]
    assert created.max() - created.min() >= pd.Timedelta(days=365)
    assert (world.truth["as_of"] - created == pd.Timedelta(days=world.as_of_days)).all()
    assert 0.15 <= 1 - labelled["mature"].mean() <= 0.25
    assert 0.015 <= labelled["early"].mean() <= 0.05
    early = labelled[labelled["early"]]
    assert (early["converted_at"] <= early["as_of"]).all()
    conv = labelled["converted_at"].dropna()
    assert (conv <= world.data_end).all()


def test_conversion_rate_matches_truth(labelled: pd.DataFrame) -> None:
    m = labelled[labelled["mature"] & ~labelled["early"]]
    rate = m["label"].mean()
    assert 0.10 <= rate <= 0.16
    p = m["true_probability"].to_numpy()
    se = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(rate - p.mean()) < 3 * se
    # Spread: a real share of hot leads and many cold ones.
    assert (p > 0.4).mean() > 0.05
    assert (p < 0.05).mean() > 0.3


def test_truth_is_calibrated(labelled: pd.DataFrame) -> None:
    m = labelled[labelled["mature"] & ~labelled["early"]].copy()
    m["bin"] = pd.qcut(m["true_probability"], 10, labels=False)
    chi2 = 0.0
    for _, grp in m.groupby("bin"):
        p = grp["true_probability"].to_numpy()
        observed, expected, sd = grp["label"].sum(), p.sum(), np.sqrt((p * (1 - p)).sum())
        # Low bins have a handful of expected positives (skewed counts): allow a few counts of slack.
        assert abs(observed - expected) <= 4 * sd + 3
        chi2 += (observed - expected) ** 2 / sd**2
    assert chi2 < 35.6  # chi-square with 10 degrees of freedom, p = 1e-4


def test_channel_ordering(labelled: pd.DataFrame) -> None:
    m = labelled[labelled["mature"] & ~labelled["early"]]
    rates = m.groupby("lead_source")["label"].mean()
    best = min(rates["referral"], rates["company_website"])
    worst = max(rates["purchased_list"], rates["email_campaign"])
    assert best > worst


def test_post_as_of_events_leak_the_label(labelled: pd.DataFrame) -> None:
    m = labelled[labelled["mature"] & ~labelled["early"]]
    conv = m.loc[m["label"], "post_events"].mean()
    non = m.loc[~m["label"], "post_events"].mean()
    assert conv > 1.5 * non


def test_fresh_leads(world: DemoWorld) -> None:
    fresh = world.fresh_leads
    assert len(fresh) == 800
    assert fresh["lead_id"].is_unique
    assert not fresh["lead_id"].isin(world.leads["lead_id"]).any()
    assert (fresh["as_of"] >= world.data_end - pd.Timedelta(days=30)).all()
    assert (fresh["as_of"] <= world.data_end).all()
    assert (fresh["as_of"] - fresh["created_at"] == pd.Timedelta(days=world.as_of_days)).all()
    assert (world.fresh_events["timestamp"] <= world.data_end).all()
    assert world.fresh_events["lead_id"].isin(fresh["lead_id"]).all()
    created = world.fresh_events["lead_id"].map(fresh.set_index("lead_id")["created_at"])
    assert (world.fresh_events["timestamp"] >= created).all()
    as_of = world.fresh_events["lead_id"].map(fresh.set_index("lead_id")["as_of"])
    assert (world.fresh_events["timestamp"] > as_of).any()
    assert world.fresh_truth["lead_id"].tolist() == fresh["lead_id"].tolist()
    assert world.fresh_truth["true_probability"].notna().all()
    assert (world.fresh_truth["as_of"] == fresh["as_of"]).all()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_demo_world(tmp_path, fmt: str) -> None:
    small = generate_demo_world(300, seed=1, n_fresh=50)
    paths = write_demo_world(small, tmp_path, fmt=fmt)
    for name in ("leads", "events", "outcomes", "fresh_leads", "fresh_events", "stages", "pipeline"):
        assert paths[name] == tmp_path / f"{name}.{fmt}"
        assert paths[name].exists()
    assert paths["truth"] == tmp_path / "truth" / "truth.csv"
    assert paths["fresh_truth"] == tmp_path / "truth" / "fresh_truth.csv"
    assert not any(p.name.startswith("truth") for p in tmp_path.iterdir() if p.is_file())
    leads = read_table(paths["leads"])
    assert leads["lead_id"].tolist() == small.leads["lead_id"].tolist()
    truth = read_table(paths["truth"])
    assert len(truth) == len(small.leads)


def test_rejects_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError):
        generate_demo_world(0)
    with pytest.raises(ValueError):
        write_demo_world(generate_demo_world(50, n_fresh=5), tmp_path, fmt="xlsx")


# ----------------------------------------------------------------------------------------------- pipeline


def test_stages_schema_and_order(world: DemoWorld) -> None:
    st = world.stages
    assert list(st.columns) == ["lead_id", "stage", "entered_at"]
    assert _utc(st["entered_at"]) and pd.api.types.is_string_dtype(st["stage"].dtype)
    assert set(st["stage"]) == set(STAGES)
    assert not st.duplicated(["lead_id", "stage"]).any()
    assert (st["entered_at"] <= world.data_end).all()
    wide = st.pivot(index="lead_id", columns="stage", values="entered_at").reindex(world.leads["lead_id"])
    # Every lead is an MQL at creation.
    assert (wide["MQL"].to_numpy() == world.leads["created_at"].to_numpy()).all()
    # Stages never go back in time, and won / lost exclude each other.
    order = ["MQL", "SRL", "SQL", "opportunity"]
    for a, b in zip(order, order[1:], strict=False):
        both = wide[a].notna() & wide[b].notna()
        assert (wide.loc[both, a] <= wide.loc[both, b]).all(), (a, b)
        assert wide.loc[wide[b].notna(), a].notna().all(), (a, b)
    for end in ("won", "lost"):
        has = wide[end].notna()
        assert wide.loc[has, "opportunity"].notna().all() and (wide.loc[has, end] > wide.loc[has, "opportunity"]).all()
    assert not (wide["won"].notna() & wide["lost"].notna()).any()


def test_opportunity_is_the_existing_conversion(world: DemoWorld) -> None:
    opp = world.stages[world.stages["stage"] == "opportunity"].set_index("lead_id")["entered_at"]
    conv = world.outcomes.set_index("lead_id")["converted_at"].dropna()
    pd.testing.assert_series_equal(opp.sort_index(), conv.sort_index(), check_names=False)


def test_planted_pipeline_rates(world: DemoWorld) -> None:
    counts = world.stages["stage"].value_counts()
    assert 0.80 <= counts["SQL"] / counts["SRL"] <= 0.90
    win = counts["won"] / (counts["won"] + counts["lost"])
    assert 0.035 <= win <= 0.09  # planted 6% on ~850 closed opportunities
    won = world.stages[world.stages["stage"] == "won"].set_index("lead_id")["entered_at"]
    opp = world.stages[world.stages["stage"] == "opportunity"].set_index("lead_id")["entered_at"]
    days = ((won - opp.reindex(won.index)) / pd.Timedelta(days=1)).median()
    assert 10 <= days <= 28  # planted median 18 days on ~50 wins


def test_pipeline_frame(world: DemoWorld) -> None:
    pipe = world.pipeline
    assert list(pipe.columns) == ["lead_id", "team", "landing_url", "handed_over_at", "first_touch_at", "deal_value",
                                  "qualified"]
    assert pipe["lead_id"].tolist() == world.leads["lead_id"].tolist()
    assert set(pipe["team"]) == set(TEAMS)
    srl = world.stages[world.stages["stage"] == "SRL"].set_index("lead_id")["entered_at"]
    handed = pipe.set_index("lead_id")["handed_over_at"].dropna()
    pd.testing.assert_series_equal(handed.sort_index(), srl.sort_index(), check_names=False)
    touched = pipe["first_touch_at"].notna()
    assert pipe.loc[touched, "handed_over_at"].notna().all()
    assert (pipe.loc[touched, "first_touch_at"] >= pipe.loc[touched, "handed_over_at"]).all()
    hours = (pipe["first_touch_at"] - pipe["handed_over_at"]) / pd.Timedelta(hours=1)
    late = (hours > 24).groupby(pipe["team"]).mean()
    assert late["team_c"] > late["team_a"]  # some teams breach a 24 h SLA far more often
    converted = world.outcomes["converted_at"].notna().to_numpy()
    assert pipe.loc[converted, "deal_value"].gt(0).all() and pipe.loc[~converted, "deal_value"].isna().all()
    big = world.leads["employees"] > 1_000
    assert pipe.loc[converted & big, "deal_value"].median() > pipe.loc[converted & ~big, "deal_value"].median()
    url = pipe["landing_url"]
    assert 0.01 < url.isna().mean() < 0.06
    cpc = url.str.contains("utm_medium=cpc", case=False, na=False)
    assert (world.leads.loc[cpc, "lead_source"] == "paid_search").all()


def test_pipeline_does_not_touch_existing_frames() -> None:
    """The pipeline draws come after everything else: the model's inputs are byte-identical for a seed."""
    small = generate_demo_world(500, seed=11, n_fresh=20)
    assert list(small.leads.columns) == LEAD_COLUMNS
    assert small.stages is not None and small.pipeline is not None
    assert small.leads["created_at"].is_monotonic_increasing
