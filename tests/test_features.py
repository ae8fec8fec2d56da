"""Point-in-time features: exact window counts, invariance to events after as_of, fixed vocabularies."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.features.build import build_lead_frame, fit_spec, type_events, type_leads
from leadscore.features.config import DataConfig, FeatureConfig
from leadscore.features.errors import DataError

T0 = pd.Timestamp("2025-03-01T12:00:00Z")


def _leads() -> pd.DataFrame:
    return pd.DataFrame({
        "lead_id": ["a", "b", "c"],
        "created_at": ["2025-02-01", "2025-02-10", "2025-02-20"],
        "industry": ["software", "retail", "software"],
        "employees": ["100", "2000", None],
    })


def _events() -> pd.DataFrame:
    rows = [
        ("a", T0 - pd.Timedelta(days=1), "page_view"),
        ("a", T0 - pd.Timedelta(days=3), "page_view"),
        ("a", T0 - pd.Timedelta(days=10), "pricing_page_view"),
        ("a", T0 - pd.Timedelta(days=40), "page_view"),
        ("a", T0 - pd.Timedelta(hours=1), "unsubscribe"),
        ("a", T0, "email_open"),  # exactly at as_of: counts
        ("a", T0 + pd.Timedelta(seconds=1), "demo_request"),  # after as_of: never counts
        ("b", T0 - pd.Timedelta(days=20), "email_open"),
        ("b", T0 + pd.Timedelta(days=2), "pricing_page_view"),
    ]
    return pd.DataFrame(rows, columns=["lead_id", "timestamp", "event_type"])


def _spec(leads, events, **feature_kwargs):
    cfg = FeatureConfig(min_category_count=1, **feature_kwargs)
    return fit_spec(leads, events, DataConfig(), cfg)


def _frame(leads, events, spec, as_of=T0):
    typed = type_leads(leads, spec, source="leads", strict=True)
    ev = type_events(events, spec, source="events")
    return build_lead_frame(typed.leads, ev, spec, pd.Series(as_of, index=range(len(typed.leads))))


def test_window_counts_recency_and_decay_by_hand():
    leads, events = _leads(), _events()
    spec = _spec(leads, events, half_life_days=7.0)
    f = _frame(leads, events, spec).frame.set_index("lead_id")
    a = f.loc["a"]
    assert a["page_view_7d"] == 2 and a["page_view_30d"] == 2 and a["page_view_90d"] == 3
    assert a["pricing_page_view_7d"] == 0 and a["pricing_page_view_30d"] == 1
    assert a["email_open_7d"] == 1
    assert a["demo_request_90d"] == 0
    assert a["unsubscribe_7d"] == 1
    # Unsubscribes are not engagement: the last engagement is the email open at as_of itself.
    assert a["days_since_last_activity"] == pytest.approx(0.0)
    assert a["engagement_events_90d"] == 5
    expected_decay = 1 + 0.5 ** (1 / 7) + 0.5 ** (3 / 7) + 0.5 ** (10 / 7) + 0.5 ** (40 / 7)
    assert a["decayed_engagement"] == pytest.approx(expected_decay)
    assert a["active_days"] == 5
    b, c = f.loc["b"], f.loc["c"]
    assert b["email_open_30d"] == 1 and b["pricing_page_view_90d"] == 0
    assert b["days_since_last_activity"] == pytest.approx(20.0)
    assert np.isnan(c["days_since_last_activity"]) and c["engagement_events_90d"] == 0


def test_without_negative_types_every_event_is_engagement():
    leads, events = _leads(), _events()
    spec = _spec(leads, events, negative_event_types=())
    a = _frame(leads, events, spec).frame.set_index("lead_id").loc["a"]
    # The six events of lead a up to as_of, the unsubscribe included (none is declared negative).
    assert a["engagement_events_90d"] == 6
    assert a["days_since_last_activity"] == pytest.approx(0.0)


def test_the_event_sql_transpiles_to_spark_with_the_same_rules():
    """One text for both engines: the Spark form keeps every window, filter and the double-valued age."""
    sqlglot = pytest.importorskip("sqlglot")
    from leadscore.features.build import event_aggregate_sql

    leads, events = _leads(), _events()
    spec = _spec(leads, events)
    for query in event_aggregate_sql(spec, leads="l_view", events="e_view"):
        spark = sqlglot.transpile(query, read="duckdb", write="spark")[0]
        assert "l_view" in spark and "e_view" in spark
    spark = sqlglot.transpile(event_aggregate_sql(spec)[0], read="duckdb", write="spark")[0]
    for name in spec.event_feature_names:
        assert f"`{name}`" in spark, name
    assert "DATEDIFF(MICROSECOND, ev.ts, l.as_of) AS DOUBLE" in spark and "FILTER(WHERE" in spark
    from leadscore.features.spark import _to_spark

    assert "FSUM" not in _to_spark(event_aggregate_sql(spec)[0]).upper()


def test_features_ignore_every_event_after_as_of(small_world):
    """Point-in-time invariance: adding (or removing) events after as_of changes no feature at all."""
    leads = small_world.leads.head(1500)
    events = small_world.events[small_world.events["lead_id"].isin(leads["lead_id"])]
    spec = fit_spec(leads, events, DataConfig(), FeatureConfig())
    as_of = pd.to_datetime(leads["created_at"], utc=True).reset_index(drop=True) + pd.Timedelta(days=14)
    typed = type_leads(leads, spec, source="leads", strict=True)
    ev = type_events(events, spec, source="events")
    before = build_lead_frame(typed.leads, ev, spec, as_of).features

    rng = np.random.default_rng(0)
    n_new = 20_000
    pick = rng.integers(0, len(leads), n_new)
    future = pd.DataFrame({
        "lead_id": typed.leads["lead_id"].to_numpy()[pick],
        "ts": as_of.iloc[pick].reset_index(drop=True)
        + pd.to_timedelta(rng.integers(1, 200 * 86400, n_new), unit="s"),
        "type": rng.choice(list(spec.event_types), n_new),
    })
    future["ts"] = pd.to_datetime(future["ts"], utc=True).astype("datetime64[us, UTC]")
    after = build_lead_frame(typed.leads, pd.concat([ev, future], ignore_index=True), spec, as_of).features
    pd.testing.assert_frame_equal(before, after)

    # And the post-as_of events that already exist in the world are ignored too: dropping them changes nothing.
    lead_as_of = dict(zip(typed.leads["lead_id"], as_of, strict=True))
    only_past = ev[ev["ts"] <= ev["lead_id"].map(lead_as_of)]
    assert len(only_past) < len(ev)
    pd.testing.assert_frame_equal(before, build_lead_frame(typed.leads, only_past, spec, as_of).features)


def test_unseen_categories_become_missing_and_are_counted():
    leads, events = _leads(), _events()
    spec = _spec(leads, events)
    assert spec.categorical_vocab["industry"] == ("retail", "software")
    new = leads.assign(industry=["software", "aerospace", "aerospace"])
    typed = type_leads(new, spec, source="new.csv", strict=False)
    assert typed.stats["unseen_category:industry"] == 2
    assert typed.leads["industry"].isna().tolist() == [False, True, True]
    encoded = spec.encode(typed.leads.assign(**{n: 0.0 for n in spec.event_feature_names}))
    assert np.isnan(encoded["industry"].iloc[1]) and encoded["industry"].iloc[0] == 1.0


def test_rare_values_are_left_out_of_the_vocabulary():
    leads = pd.DataFrame({"lead_id": [str(i) for i in range(40)], "created_at": "2025-01-01",
                          "source": ["web"] * 25 + ["fair"] * 12 + ["rare1", "rare2", "rare3"]})
    spec = fit_spec(leads, None, DataConfig(), FeatureConfig(min_category_count=10))
    assert spec.categorical_vocab["source"] == ("fair", "web")
    assert not spec.has_events and spec.event_feature_names == ()


def test_identifier_like_and_constant_columns_are_not_features():
    leads = pd.DataFrame({"lead_id": [str(i) for i in range(50)], "created_at": "2025-01-01",
                          "email": [f"p{i}@x.com" for i in range(50)], "flag": "yes", "size": range(50)})
    spec = fit_spec(leads, None, DataConfig(), FeatureConfig())
    assert spec.numeric_columns == ("size",)
    assert "email" in spec.dropped_columns and "flag" in spec.dropped_columns


def test_scoring_rows_with_bad_values_go_to_rejects_with_reasons():
    leads, events = _leads(), _events()
    spec = _spec(leads, events)
    bad = pd.DataFrame({"lead_id": ["x", None, "x", "y", "z"], "industry": "software",
                        "employees": ["10", "20", "30", "lots", "40"]})
    typed = type_leads(bad, spec, source="list.csv", strict=False)
    # 'lots' in a number column is missing, as training reads it: counted, not a reject.
    assert typed.leads["lead_id"].tolist() == ["x", "y", "z"]
    assert np.isnan(typed.leads["employees"].iloc[1])
    reasons = dict(zip(typed.rejects["input_row"], typed.rejects["reject_reason"], strict=True))
    assert reasons == {2: "column 'lead_id': missing lead id", 3: "column 'lead_id': duplicate lead id"}
    assert typed.stats["rejected_rows"] == 2 and typed.stats["not_a_number:employees"] == 1
    dupes = pd.DataFrame({"lead_id": ["x", "y", "x"], "industry": "software", "employees": "1"})
    with pytest.raises(DataError, match=r"list.csv: column 'lead_id': duplicate lead id \(row 3\)"):
        type_leads(dupes, spec, source="list.csv", strict=True)


def test_spec_json_round_trip_keeps_feature_order():
    leads, events = _leads(), _events()
    leads["zone"] = ["b", "a", "b"]
    spec = _spec(leads, events)
    from leadscore.features.spec import FeatureSpec

    again = FeatureSpec.from_json(spec.to_json())
    assert again == spec
    assert again.feature_names == spec.feature_names


def test_training_treats_rare_unreadable_numbers_as_missing_but_stops_on_many():
    leads = pd.DataFrame({"lead_id": [str(i) for i in range(100)], "created_at": "2025-01-01",
                          "employees": [str(i) for i in range(97)] + ["n/k", "50-100", "?"]})
    spec = fit_spec(leads, None, DataConfig(), FeatureConfig())
    assert spec.numeric_columns == ("employees",)
    typed = type_leads(leads, spec, source="leads.csv", strict=True)
    assert typed.stats["not_a_number:employees"] == 3
    assert typed.leads["employees"].isna().sum() == 3 and len(typed.leads) == 100
    worse = leads.assign(employees=[str(i) for i in range(80)] + ["lots"] * 20)
    with pytest.raises(DataError, match=r"leads.csv: column 'employees': expected a number, found 'lots' \(rows 81"):
        type_leads(worse, spec, source="leads.csv", strict=True)


def test_explicit_as_of_that_is_not_a_date_is_a_one_line_error():
    from leadscore.features.build import resolve_as_of

    leads, events = _leads(), _events()
    spec = _spec(leads, events)
    with pytest.raises(DataError, match="list.csv: as_of: cannot parse 'tomorrow-ish' as a date/time"):
        resolve_as_of(leads, spec, "tomorrow-ish", source="list.csv")


def test_typing_never_mutates_the_callers_frame():
    leads, events = _leads(), _events()
    spec = _spec(leads, events)
    before = leads.copy()
    type_leads(leads, spec, source="leads", strict=False, require_created=True)
    pd.testing.assert_frame_equal(leads, before)


def test_vocabularies_and_event_types_come_from_the_training_slice_only(small_world):
    from leadscore.features.config import TrainConfig
    from leadscore.training.train import prepare_training_data

    leads = small_world.leads.copy()
    events = small_world.events.copy()
    late = pd.to_datetime(leads["created_at"], utc=True) > pd.Timestamp("2025-05-01", tz="UTC")
    leads.loc[late, "industry"] = "quantum_computing"  # a value first seen in the test period
    late_ids = set(leads.loc[late, "lead_id"])
    new_events = events[events["lead_id"].isin(late_ids)].head(300).assign(event_type="chat_started")
    prepared = prepare_training_data(leads, small_world.outcomes, pd.concat([events, new_events]),
                                     TrainConfig(seed=3))
    spec = prepared.spec
    assert "quantum_computing" not in spec.categorical_vocab["industry"]
    assert "chat_started" not in spec.event_types
    test_industry = prepared.frame.frame.loc[prepared.split.test, "industry"]
    assert (test_industry != "quantum_computing").all()  # unseen in training -> missing, as at scoring time


def test_event_stores_of_killed_runs_are_removed_and_live_ones_kept(tmp_path, monkeypatch, trained):
    """A run killed with `kill -9` cannot clean up: the next run removes its event store (its process is gone)."""
    import subprocess
    import sys
    import tempfile

    from leadscore.features.build import EventStore

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = tmp_path / f"leadscore-events-{proc.pid}-abc"
    live = tmp_path / f"leadscore-events-{os.getpid()}-def"
    for folder in (dead, live):
        (folder / "spill").mkdir(parents=True)
        (folder / "events.duckdb").write_bytes(b"x")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    store = EventStore(trained.bundle.spec)
    try:
        assert not dead.exists() and live.exists()
        assert Path(store.folder).parent == tmp_path
    finally:
        store.close()
    assert not Path(store.folder).exists() and live.exists()


@pytest.mark.parametrize("dedupe", [False, True])
@pytest.mark.parametrize("clustering", ["partitioned", "sorted"])
def test_event_store_clustered_by_chunk_gives_the_features_of_the_whole_log(small_world, trained, dedupe,
                                                                            clustering, monkeypatch):
    """Mapped to their chunks, leads read only their own events: the same features and counters as the log in
    memory, with duplicate ids across chunks, leads without events and repeated event rows; with the log
    partitioned by chunk (short lists) or sorted by it (long ones)."""
    from leadscore.features import build
    from leadscore.features.build import EventStore, event_features

    if clustering == "sorted":
        monkeypatch.setattr(build, "PARTITIONED_CLUSTER_LEADS", 0)

    spec = trained.bundle.spec
    leads = small_world.leads.head(900).reset_index(drop=True)
    ids = leads["lead_id"].astype("string")
    ids.iloc[700] = ids.iloc[10]  # the same id in two chunks
    events = type_events(small_world.events, spec, source="events")
    events = pd.concat([events, events.iloc[:500]], ignore_index=True)  # repeated rows
    as_of = pd.Series(pd.Timestamp("2025-06-01", tz="UTC"), index=range(len(leads))).astype("datetime64[us, UTC]")
    chunks = [slice(0, 300), slice(300, 600), slice(600, 900)]
    store = EventStore(spec, memory_limit="64MB")
    try:
        for part, rows in enumerate(chunks):
            store.map_leads(part, ids.iloc[rows])
        for start in range(0, len(events), 20_000):
            store.add(events.iloc[start:start + 20_000])
        if dedupe:
            store.deduplicate()
        for part, rows in enumerate(chunks):
            chunk_ids = ids.iloc[rows].reset_index(drop=True)
            chunk_as_of = as_of.iloc[rows].reset_index(drop=True)
            got, got_stats = store.features(chunk_ids, chunk_as_of, part=part)
            mine = chunk_ids.astype(str)
            log = events[events["lead_id"].isin(mine)]
            if dedupe:
                log = log.drop_duplicates(["lead_id", "ts", "type"])
            want, want_stats = event_features(chunk_ids, chunk_as_of, log, spec)
            pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
            for key, value in want_stats.items():
                assert got_stats[key] == value, key
            dupes = int(events[events["lead_id"].isin(mine)].duplicated(["lead_id", "ts", "type"]).sum())
            assert got_stats.get("duplicate_events", 0) == dupes
        assert got_stats["events_used"] > 0
        assert (store.by_part is None) == (clustering == "sorted")
        with pytest.raises(RuntimeError, match="not mapped"):
            store.features(ids.iloc[:300].reset_index(drop=True), as_of.iloc[:300].reset_index(drop=True), part=1)
    finally:
        store.close()
