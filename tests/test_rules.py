"""Manual rule scores: operators, caps, decay, point-in-time, replay, alerts, config errors, demo world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.demo_world import EVENT_TYPES, generate_demo_world
from leadscore.features.errors import ConfigError, DataError
from leadscore.models.rules import (
    OPS,
    ColumnRuleScorer,
    RuleScorer,
    ScoreBands,
    alerts,
    band_crossings,
    load_rules,
    replay_scores,
    rules_from_dict,
    score_rules,
)

RULES_DIR = Path(__file__).resolve().parents[1] / "rules"
AS_OF = pd.Timestamp("2025-03-01", tz="UTC")


def at(days_before: float) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=days_before)


def ruleset(*criteria: dict, **top) -> object:
    return rules_from_dict({"criteria": list(criteria), **top})


def events(*rows: tuple[str, str, pd.Timestamp]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["lead_id", "event_type", "timestamp"])


def scores(rules, leads, evs=None, as_of=AS_OF) -> pd.Series:
    out = score_rules(rules, leads, evs, as_of)
    return out.set_index("lead_id")["score"]


LEADS = pd.DataFrame(
    {
        "lead_id": ["a", "b", "c", "d"],
        "industry": ["Software", " retail ", None, "education"],
        "employees": ["250", "12", "", "5000"],  # text, as read from CSV
        "is_multinational": ["yes", "no", None, "1"],
        "job_title": ["VP Sales", "Student", "CTO", None],
    }
)


@pytest.mark.parametrize(
    ("op", "column", "value", "expected"),
    [
        ("eq", "industry", "software", ["a"]),
        ("ne", "industry", "software", ["b", "d"]),  # a missing cell matches nothing but is_missing
        ("in", "industry", ["retail", "education"], ["b", "d"]),
        ("not_in", "industry", ["retail"], ["a", "d"]),
        ("eq", "employees", 250, ["a"]),
        ("in", "employees", [12, 5000], ["b", "d"]),
        ("gt", "employees", 250, ["d"]),
        ("ge", "employees", 250, ["a", "d"]),
        ("lt", "employees", 250, ["b"]),
        ("le", "employees", 250, ["a", "b"]),
        ("between", "employees", [12, 250], ["a", "b"]),
        ("contains", "job_title", "vp", ["a"]),
        ("contains", "job_title", ["student", "cto"], ["b", "c"]),
        ("is_true", "is_multinational", None, ["a", "d"]),
        ("is_missing", "employees", None, ["c"]),
        ("is_missing", "job_title", None, ["d"]),
    ],
)
def test_each_operator(op, column, value, expected):
    crit = {"name": "t", "column": column, "op": op, "points": 7}
    if value is not None:
        crit["value"] = value
    got = scores(ruleset(crit), LEADS)
    assert sorted(got[got == 7].index) == expected
    assert set(got) <= {0.0, 7.0}


def test_every_operator_is_tested():
    assert set(OPS) == {"eq", "ne", "in", "not_in", "gt", "ge", "lt", "le", "between", "contains", "is_true",
                        "is_missing"}


def test_bool_column_and_numeric_behaviour_column_in_engagement():
    leads = pd.DataFrame({"lead_id": ["a", "b"], "is_multinational": [True, False], "email_opens": [9, 2]})
    rules = ruleset(
        {"name": "mnc", "column": "is_multinational", "op": "eq", "value": True, "points": 10},
        {"name": "opens", "column": "email_opens", "op": "ge", "value": 5, "points": 15, "group": "engagement"},
    )
    out = score_rules(rules, leads, as_of=AS_OF).set_index("lead_id")
    assert out.loc["a", ["points_fit", "points_engagement", "score"]].tolist() == [10, 15, 25]
    assert out.loc["b", "score"] == 0


def test_group_cap_total_cap_and_max_count():
    leads = pd.DataFrame({"lead_id": ["a"], "is_multinational": [True]})
    evs = events(*[("a", "webinar_attended", at(d)) for d in (1, 2, 3, 4, 5)], ("a", "content_download", at(1)))
    webinar = {"name": "webinar", "event_type": "webinar_attended", "points": 30, "max_count": 3}
    download = {"name": "download", "event_type": "content_download", "points": 10}
    fit = {"name": "mnc", "column": "is_multinational", "op": "is_true", "points": 10}
    assert scores(ruleset(webinar), leads, evs)["a"] == 90  # 5 webinars, 3 counted
    assert scores(ruleset(webinar, download, fit), leads, evs)["a"] == 110
    capped = ruleset(webinar, download, fit, groups={"engagement": {"cap": 60}})
    out = score_rules(capped, leads, evs, AS_OF).iloc[0]
    assert (out["points_engagement"], out["points_fit"], out["score"]) == (60, 10, 70)
    assert scores(ruleset(webinar, download, fit, total_cap=100), leads, evs)["a"] == 100
    assert (out["reason_1"], out["reason_2"], out["reason_3"]) == ("webinar x3 (+90)", "download x1 (+10)", "mnc (+10)")


def test_negative_points_and_floor_at_zero():
    leads = pd.DataFrame({"lead_id": ["a", "b"], "job_title": ["Student", "Student"]})
    evs = events(("a", "page_view", at(1)), ("a", "unsubscribe", at(1)), ("b", "email_bounce", at(2)))
    crits = (
        {"name": "student", "column": "job_title", "op": "eq", "value": "student", "points": -20},
        {"name": "visit", "event_type": "page_view", "points": 25},
        {"name": "unsubscribed", "event_type": "unsubscribe", "points": -30},
        {"name": "bounced", "event_type": "email_bounce", "points": -20},
    )
    out = score_rules(ruleset(*crits), leads, evs, AS_OF).set_index("lead_id")
    assert out.loc["a", "points_engagement"] == 0  # 25 - 30 floored at zero
    assert out.loc["a", "points_fit"] == 0  # -20 floored
    assert (out["score"] >= 0).all()
    assert out.loc["a", "reason_1"] == "unsubscribed x1 (-30)"
    assert out.loc["a", "reason_2"] == "visit x1 (+25)"
    no_floor = ruleset(*crits, groups={"fit": {"floor": None}, "engagement": {"floor": None}})
    raw = score_rules(no_floor, leads, evs, AS_OF).set_index("lead_id")
    assert raw.loc["a", "score"] == -25 and raw.loc["b", "score"] == -40


def test_half_life_halves_points_at_one_half_life():
    leads = pd.DataFrame({"lead_id": ["a", "b", "c"]})
    evs = events(("a", "demo_request", at(30)), ("b", "demo_request", at(60)), ("c", "demo_request", at(0)))
    rules = ruleset({"name": "demo", "event_type": "demo_request", "points": 40},
                    groups={"engagement": {"decay": {"half_life_days": 30}}})
    got = scores(rules, leads, evs)
    assert got.to_dict() == {"a": 20.0, "b": 10.0, "c": 40.0}
    fit = ruleset({"name": "all", "column": "lead_id", "op": "is_missing", "points": 0},
                  {"name": "x", "column": "lead_id", "op": "ne", "value": "zzz", "points": 12},
                  groups={"fit": {"decay": {"half_life_days": 1}}})
    assert (scores(fit, leads) == 12).all()  # fit points never decay


def test_expire_after_days_drops_older_events_keeps_newer():
    leads = pd.DataFrame({"lead_id": ["a"]})
    evs = events(("a", "webinar_attended", at(11)), ("a", "webinar_attended", at(9)),
                 ("a", "webinar_attended", at(10)))
    rules = ruleset({"name": "webinar", "event_type": "webinar_attended", "points": 30},
                    groups={"engagement": {"decay": {"expire_after_days": 10}}})
    assert scores(rules, leads, evs)["a"] == 60  # 9 and exactly 10 days old count, 11 expired


def test_within_days_window():
    leads = pd.DataFrame({"lead_id": ["a"]})
    evs = events(("a", "pricing_page_view", at(5)), ("a", "pricing_page_view", at(45)))
    rules = ruleset({"name": "pricing", "event_type": ["pricing_page_view"], "points": 10, "within_days": 30})
    assert scores(rules, leads, evs)["a"] == 10


def test_events_after_as_of_change_nothing():
    leads = pd.DataFrame({"lead_id": ["a", "b"], "is_multinational": [True, False]})
    base = events(("a", "offline_event_attended", at(3)), ("b", "content_download", at(1)))
    later = events(("a", "offline_event_attended", at(-1)), ("b", "demo_request", at(-0.001)),
                   ("b", "content_download", at(-30)))
    rules = load_rules(RULES_DIR / "example.yaml")
    before = score_rules(rules, leads, base, AS_OF)
    after = score_rules(rules, leads, pd.concat([base, later], ignore_index=True), AS_OF)
    pd.testing.assert_frame_equal(before, after)


def test_per_lead_as_of_column():
    leads = pd.DataFrame({"lead_id": ["a", "b"], "as_of": ["2025-01-10", "2025-01-30"],
                          "is_multinational": ["no", "no"]})
    evs = events(("a", "content_download", pd.Timestamp("2025-01-20", tz="UTC")),
                 ("b", "content_download", pd.Timestamp("2025-01-20", tz="UTC")))
    out = score_rules(load_rules(RULES_DIR / "example.yaml"), leads, evs).set_index("lead_id")
    assert out["score"].to_dict() == {"a": 0, "b": 10}
    assert str(out["as_of"].dtype) == "datetime64[us, UTC]"


def test_same_lead_on_two_rows_gets_its_events_on_each():
    leads = pd.DataFrame({"lead_id": ["a", "a", "b"], "as_of": ["2025-01-10", "2025-01-30", "2025-01-30"],
                          "is_multinational": [0, 0, 0]})
    evs = events(("a", "content_download", pd.Timestamp("2025-01-20", tz="UTC")),
                 ("b", "livestream_watched", pd.Timestamp("2025-01-01", tz="UTC")))
    out = score_rules(load_rules(RULES_DIR / "example.yaml"), leads, evs)
    assert out["score"].tolist() == [0, 10, 30]


def test_replay_differs_only_where_events_happened_between_dates():
    leads = pd.DataFrame({"lead_id": ["a", "b", "c"], "is_multinational": [False, False, False]})
    evs = events(("a", "offline_event_attended", pd.Timestamp("2025-02-10", tz="UTC")),
                 ("b", "livestream_watched", pd.Timestamp("2025-01-05", tz="UTC")))
    rules = load_rules(RULES_DIR / "example.yaml")
    out = replay_scores(rules, leads, evs, ["2025-02-01", "2025-03-01"])
    assert list(out.columns) == ["lead_id", "as_of", "score", "band"]
    wide = out.pivot(index="lead_id", columns="as_of", values="score")
    first, second = wide.columns
    assert wide.loc["a", first] == 0 and wide.loc["a", second] == 50
    assert wide.loc["b", first] == wide.loc["b", second] == 30
    assert wide.loc["c", first] == wide.loc["c", second] == 0


def test_replay_leaves_out_leads_not_created_yet():
    leads = pd.DataFrame({"lead_id": ["a", "b"], "created_at": ["2025-01-01", "2025-02-15"],
                          "is_multinational": [1, 0]})
    rules = load_rules(RULES_DIR / "example.yaml")
    out = replay_scores(rules, leads, None, ["2025-02-01", "2025-03-01"], created_column="created_at")
    assert out["lead_id"].tolist() == ["a", "a", "b"]


def test_band_boundaries():
    bands = ScoreBands()
    got = bands.assign(np.array([0, 40, 40.01, 41, 60, 60.01, 100, np.nan])).tolist()
    assert got[:7] == ["nurture", "nurture", "telemarketing", "telemarketing", "telemarketing", "sales", "sales"]
    assert pd.isna(got[7])


def test_band_crossings_and_alerts():
    rules = load_rules(RULES_DIR / "example.yaml")
    leads = pd.DataFrame({"lead_id": ["a", "b", "c", "d"], "is_multinational": [True, False, False, True]})
    first = events(("a", "livestream_watched", at(20)), ("b", "offline_event_attended", at(20)),
                   ("b", "content_download", at(20)))
    second = pd.concat([first, events(("a", "livestream_watched", at(2)), ("c", "content_download", at(1)))])
    previous = score_rules(rules, leads.iloc[:3], first, at(10))
    current = score_rules(rules, leads, second, AS_OF)
    moved = band_crossings(previous, current)
    assert list(moved.columns) == ["lead_id", "from_band", "to_band", "score_before", "score_after", "direction"]
    row = moved.set_index("lead_id").loc["a"]
    assert (row["from_band"], row["to_band"], row["score_before"], row["score_after"]) == ("nurture", "sales", 40, 70)
    assert set(moved["lead_id"]) == {"a", "d"}  # b stays telemarketing, c stays nurture, d is new
    assert moved.set_index("lead_id").loc["d", "direction"] == "new"
    top = alerts(previous, current)
    assert top["lead_id"].tolist() == ["a"]
    down = band_crossings(current, previous)
    assert down.set_index("lead_id").loc["a", "direction"] == "down"
    assert band_crossings(current, previous, only_up=True).empty


def test_adding_a_positive_event_never_lowers_the_score():
    # A seeded loop of random cases instead of hypothesis (no extra dependency).
    rng = np.random.default_rng(7)
    types = list(EVENT_TYPES)
    checked = 0
    for case in range(150):
        crits = []
        for i in range(int(rng.integers(1, 6))):
            crit = {"name": f"r{i}", "event_type": list(rng.choice(types, int(rng.integers(1, 3)), replace=False)),
                    "points": float(rng.integers(-40, 60))}
            if rng.random() < 0.5:
                crit["max_count"] = int(rng.integers(1, 4))
            if rng.random() < 0.3:
                crit["within_days"] = float(rng.integers(1, 60))
            crits.append(crit)
        crits.append({"name": "fit", "column": "lead_id", "op": "ne", "value": "x", "points": 5})
        groups = {"engagement": {"cap": float(rng.integers(20, 200))}} if rng.random() < 0.5 else {}
        if rng.random() < 0.3:
            groups["engagement"] = {**groups.get("engagement", {}), "decay": {"expire_after_days": 20}}
        total_cap = float(rng.integers(30, 150)) if rng.random() < 0.3 else None
        rules = ruleset(*crits, groups=groups, total_cap=total_cap)
        n = int(rng.integers(0, 15))
        base = events(*[("a", str(rng.choice(types)), at(float(rng.uniform(-5, 90)))) for _ in range(n)])
        # A positive-point event: its type is matched by positive criteria only.
        negative = {t for c in crits[:-1] if c["points"] < 0 for t in c["event_type"]}
        positive = sorted({t for c in crits[:-1] if c["points"] > 0 for t in c["event_type"]} - negative)
        if not positive:
            continue
        added = events(("a", positive[int(rng.integers(len(positive)))], at(float(rng.uniform(-5, 90)))))
        leads = pd.DataFrame({"lead_id": ["a"]})
        before = scores(rules, leads, base if n else None)["a"]
        after = scores(rules, leads, pd.concat([base, added], ignore_index=True))["a"]
        assert after >= before, f"case {case}: {before} -> {after}"
        checked += 1
    assert checked > 100


def test_example_files_load_and_score_names():
    rules = load_rules(RULES_DIR / "example.yaml")
    assert [c.name for c in rules.criteria] == ["multinational company", "offline event attended",
                                               "livestream watched", "content download"]
    assert [c.points for c in rules.criteria] == [10, 50, 30, 10]
    assert rules.bands == ScoreBands(("nurture", "telemarketing", "sales"), (40.0, 60.0))
    extended = load_rules(RULES_DIR / "demo_extended.yaml")
    assert extended.group("engagement").decay.half_life_days == 30


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"criteria": [{"name": "x", "column": "c", "op": "eq", "value": 1, "points": 1, "pionts": 2}]},
         "rules.criteria[0].pionts: unknown key"),
        ({"criteria": [{"name": "x", "column": "c", "op": "equals", "value": 1, "points": 1}]},
         "rules.criteria[0].op: unknown operator 'equals'"),
        ({"criteria": [{"name": "x", "column": "c", "op": "eq", "points": 1}]}, "rules.criteria[0].value: required"),
        ({"criteria": [{"name": "x", "column": "c", "op": "eq", "value": 1}]}, "rules.criteria[0].points: required"),
        ({"criteria": [{"name": "x", "event_type": "a", "points": 1}],
          "groups": {"engagement": {"decay": {"half": 3}}}},
         "rules.groups.engagement.decay.half: unknown key"),
        ({"criteria": [{"name": "x", "event_type": "a", "points": 1, "group": "intent"}]},
         "rules.criteria[0].group: unknown group 'intent'"),
        ({"criteria": [{"name": "x", "event_type": "a", "points": 1, "max_count": 0}]}, "rules.criteria[0].max_count"),
        ({"criteria": [{"name": "x", "column": "c", "op": "between", "value": [5, 1], "points": 1}]},
         "rules.criteria[0].value: low 5 is above high 1"),
        ({"criteria": [{"name": "x", "column": "c", "op": "is_true", "points": 1}], "bands": [{"name": "a"}]},
         "rules.bands"),
        ({"criteria": [{"name": "x", "column": "c", "op": "is_true", "points": 1}], "band": []},
         "rules.band: unknown key"),
    ],
)
def test_config_errors_name_the_key_path(values, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rules_from_dict(values)


def test_load_rules_errors_name_the_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("criteria:\n  - {name: a, column: c, op: gte, value: 1, points: 2}\n")
    with pytest.raises(ConfigError, match=r"r\.yaml\.criteria\[0\]\.op: unknown operator 'gte'"):
        load_rules(path)
    with pytest.raises(ConfigError, match="not found"):
        load_rules(tmp_path / "missing.yaml")


def test_missing_column_is_a_one_line_data_error():
    rules = load_rules(RULES_DIR / "example.yaml")
    with pytest.raises(DataError) as info:
        score_rules(rules, pd.DataFrame({"lead_id": ["a"]}), source="crm.csv")
    text = str(info.value)
    assert "\n" not in text and text.startswith("crm.csv:") and "'is_multinational'" in text
    leads = pd.DataFrame({"lead_id": ["a"], "is_multinational": [True]})
    with pytest.raises(DataError, match="events: missing required event column 'timestamp'"):
        score_rules(rules, leads, pd.DataFrame({"lead_id": ["a"], "event_type": ["x"]}))


def test_non_numeric_cells_are_a_data_error_with_rows():
    rules = ruleset({"name": "big", "column": "employees", "op": "gt", "value": 100, "points": 5})
    leads = pd.DataFrame({"lead_id": ["a", "b", "c"], "employees": ["10", "many", "lots"]})
    with pytest.raises(DataError, match=r"leads: column 'employees': cannot read 'many' as a number \(rows 2, 3\)"):
        score_rules(rules, leads, as_of=AS_OF)


def test_column_rule_scorer_uses_crm_scores():
    leads = pd.DataFrame({"lead_id": ["a", "b", "c"], "hs_score": ["12", "55", "61"]})
    out = ColumnRuleScorer("hs_score").score(leads, as_of=AS_OF)
    assert out["band"].tolist() == ["nurture", "telemarketing", "sales"]
    assert out["score"].tolist() == [12, 55, 61]
    bad = leads.assign(hs_score=["12", "n/a", "61"])
    with pytest.raises(DataError, match=r"export\.csv: column 'hs_score': cannot read 'n/a' as a number \(row 2\)"):
        ColumnRuleScorer("hs_score", source="export.csv").score(bad)


def test_rule_scorer_on_the_demo_world():
    world = generate_demo_world(4000, seed=1)
    leads = world.leads.assign(as_of=world.truth["as_of"])
    scorer = RuleScorer.load(RULES_DIR / "example.yaml")
    out = scorer.score(leads, world.events)
    assert len(out) == len(leads) and out["lead_id"].tolist() == leads["lead_id"].tolist()
    assert out["score"].notna().all() and (out["score"] >= 0).all()
    assert set(out["band"]) <= set(scorer.bands.names)
    ev = world.events.merge(leads[["lead_id", "as_of"]], on="lead_id")
    offline = ev[(ev["event_type"] == "offline_event_attended") & (ev["timestamp"] <= ev["as_of"])]["lead_id"]
    assert len(set(offline)) > 0
    assert (out.set_index("lead_id").loc[sorted(set(offline)), "score"] >= 50).all()
    extended = RuleScorer.load(RULES_DIR / "demo_extended.yaml").score(leads, world.events, reasons=False)
    assert extended["score"].between(0, 100).all() and "reason_1" not in extended.columns
