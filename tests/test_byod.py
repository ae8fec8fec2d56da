"""Bring your own data: formats, dataset configs, schema checks at scoring, data checks and leakage probes."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from leadscore.features.config import CheckConfig, DataConfig, TrainConfig, load_config
from leadscore.features.errors import ConfigError, DataError
from leadscore.pipeline import check_data, load_inputs
from leadscore.serve.predictor import Predictor
from leadscore.training.train import DataCheckFailed, train_model

REPO = Path(__file__).resolve().parents[1]


def _flat(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """A flat export: behaviour already aggregated, a 0/1 label that depends on it."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n)
    source = rng.choice(["web", "referral", "list", "Select"], n)
    logit = -1.5 + 0.5 * visits + np.where(source == "referral", 1.0, 0.0) - np.where(source == "list", 1.0, 0.0)
    return pd.DataFrame({
        "Lead ID": [f"X{i:05d}" for i in range(n)],
        "Visits": visits.astype(str),
        "Source": source,
        "Revenue": [f"${v:,.2f}" for v in rng.lognormal(8, 1, n)],
        "Won": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).astype(str),
    })


def _cfg(**data) -> TrainConfig:
    return TrainConfig(data=DataConfig(lead_id="Lead ID", label="Won", **data),
                       checks=CheckConfig(min_positives=20, min_negatives=20))


def test_formatted_numbers_are_an_error_unless_declared():
    with pytest.raises(DataError, match=r"column 'Revenue': numbers are written with currency or thousands "
                                        r"separators \(e.g. '\$.*'\); set data.decimal"):
        train_model(_flat(), config=_cfg())
    result = train_model(_flat(), config=_cfg(decimal="."))
    assert "Revenue" in result.bundle.spec.numeric_columns
    european = _flat().assign(Revenue=lambda d: d["Revenue"].str.replace("$", "").str.replace(",", "X")
                              .str.replace(".", ",").str.replace("X", ".") + " EUR")
    typed = train_model(european, config=_cfg(decimal=",")).frame.frame["Revenue"]
    expected = train_model(_flat(), config=_cfg(decimal=".")).frame.frame["Revenue"]
    np.testing.assert_allclose(typed.to_numpy(), expected.to_numpy())


def test_placeholder_values_become_missing_in_training_and_scoring():
    result = train_model(_flat(), config=_cfg(decimal=".", na_values=("Select",)))
    spec = result.bundle.spec
    assert "Select" not in spec.categorical_vocab["Source"] and spec.na_values == ("Select",)
    scored = Predictor(result.bundle).score(_flat(50, seed=1).drop(columns="Won"))
    assert len(scored) == 50
    typed = Predictor(result.bundle).score_detailed(_flat(50, seed=1)).stats
    assert "unseen_category:Source" not in typed  # "Select" is missing, not an unseen category


def test_without_dates_the_split_is_stratified_random_and_said_so():
    flat = _flat().assign(**{"Last Activity": lambda d: pd.Timestamp("2025-01-01")
                             + pd.to_timedelta(np.arange(len(d)) % 300, unit="D")})
    flat["Last Activity"] = flat["Last Activity"].dt.strftime("%Y-%m-%d")
    result = train_model(flat, config=_cfg(decimal="."))
    assert result.split.method == "stratified random (no dates)"
    assert "created_column_detected" not in result.counts
    # A date column that may be the creation time is not a feature, and the reason names the option to use it.
    assert "--date 'Last Activity' splits by time" in result.bundle.spec.dropped_columns["Last Activity"]
    y = result.frame.y
    rates = [y[m].mean() for m in (result.split.train, result.split.calibration, result.split.test)]
    assert max(rates) - min(rates) < 0.03


def _with_dates(names: list[str], n: int = 600) -> pd.DataFrame:
    flat = _flat(n)
    for k, name in enumerate(names):
        flat[name] = (pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(n) % 300 + k, unit="D")
                      ).strftime("%Y-%m-%d")
    return flat


@pytest.mark.parametrize("name", ["Lead Created", "lead_created_at", "CreatedDate", "Create Date", "Date Created",
                                  "signup_date", "createdate"])
def test_a_creation_time_column_is_found_by_its_name(name):
    from leadscore.features.build import resolve_created_column

    data = DataConfig(lead_id="Lead ID", label="Won")
    table = _with_dates([name, "Last Activity", "opportunity_created_at"], 50)
    resolved, found = resolve_created_column(table, data, source="leads")
    assert found == name and resolved.created_at == name
    # Not text that merely looks like a date column's name: the cells must read as dates.
    assert resolve_created_column(table.assign(**{name: "n/a"}), data, source="leads") == (data, None)


@pytest.mark.parametrize("names", [["opportunity_created_at"], ["account created"], ["Last Modified Date"],
                                   ["Lead Created", "Created Date"]])
def test_no_creation_column_is_guessed_from_other_records_or_among_several(names):
    from leadscore.features.build import resolve_created_column

    data = DataConfig(lead_id="Lead ID", label="Won")
    assert resolve_created_column(_with_dates(names, 50), data, source="leads") == (data, None)


def test_a_creation_column_found_by_name_splits_by_time_and_scoring_uses_it():
    result = train_model(_with_dates(["lead_created_at", "Last Activity"]), config=_cfg(decimal="."))
    assert result.counts["created_column_detected"] == "lead_created_at"
    assert result.split.method == "time" and result.bundle.spec.created_column == "lead_created_at"
    assert "lead_created_at" not in result.bundle.spec.dropped_columns  # the creation time, not a left-out column
    assert "--date 'Last Activity' splits" not in result.bundle.spec.dropped_columns["Last Activity"]
    fresh = _with_dates(["lead_created_at"], 40)
    assert len(Predictor(result.bundle).score(fresh.drop(columns="Won"))) == 40
    several = train_model(_with_dates(["Lead Created", "Created Date"]), config=_cfg(decimal="."))
    assert several.split.method == "stratified random (no dates)" and "created_column_detected" not in several.counts
    for name in ("Lead Created", "Created Date"):
        assert f"--date {shlex.quote(name)} splits by time" in several.bundle.spec.dropped_columns[name]


def test_a_creation_column_named_on_purpose_must_exist():
    with pytest.raises(DataError, match=r"leads: missing required creation time \(--date / data.created_at\) "
                                        r"column 'Lead Date'"):
        train_model(_with_dates(["Lead Created"]), config=_cfg(decimal=".", created_at="Lead Date"))


def test_duplicate_ids_in_training_name_the_file_column_and_rows():
    flat = _flat()
    flat.loc[7, "Lead ID"] = flat.loc[3, "Lead ID"]
    with pytest.raises(DataError, match=r"export.csv: column 'Lead ID': duplicate lead id \(row 8\)"):
        train_model(flat, config=_cfg(decimal="."), sources={"leads": "export.csv"})


def test_sufficiency_gate_recommends_the_rules():
    flat = _flat(200)
    assert (flat["Won"] == "1").sum() < 120
    with pytest.raises(DataCheckFailed, match=r"only \d+ conversions .* at least 120 .* Keep using the rule score"):
        train_model(flat, config=TrainConfig(data=DataConfig(lead_id="Lead ID", label="Won", decimal=".")))


def test_a_leaky_column_stops_training_and_can_be_allowed():
    flat = _flat().assign(Stage=lambda d: np.where(d["Won"] == "1", "closed_won", "open"))
    with pytest.raises(DataCheckFailed, match="column 'Stage' alone ranks the label with AUC 1.000") as caught:
        train_model(flat, config=_cfg(decimal="."))
    assert "--drop Stage" in str(caught.value) and "--allow Stage" in str(caught.value)  # what to do, named
    allowed = train_model(flat, config=_cfg(decimal=".", allow_columns=("Stage",)))
    notes = [p for p in allowed.checks.problems if p["column"] == "Stage"]
    assert [(p["severity"], p["check"]) for p in notes] == [("info", "allowed")]
    assert "AUC 1.000" in notes[0]["message"]


def test_nullable_integers_from_parquet(tmp_path):
    flat = _flat().assign(Visits=lambda d: pd.array([None if i % 17 == 0 else int(v) for i, v in
                                                      enumerate(d["Visits"])], dtype="Int64"))
    flat.to_parquet(tmp_path / "leads.parquet")
    dataset, cfg = load_inputs(_cfg(decimal="."), leads_path=tmp_path / "leads.parquet")
    assert str(dataset.leads["Visits"].dtype) == "Int64"
    result = train_model(dataset.leads, config=cfg)
    assert result.frame.frame["Visits"].isna().sum() == len(range(0, 600, 17))


def test_scoring_validates_the_list_against_the_model_schema():
    result = train_model(_flat(), config=_cfg(decimal="."))
    predictor = Predictor(result.bundle)
    new = _flat(40, seed=2).drop(columns="Won")
    reordered = new[["Revenue", "Source", "Lead ID", "Visits"]].assign(Owner="ann")
    a = predictor.score(new, reasons=False)
    b = predictor.score_detailed(reordered, reasons=False, keep_columns=["Owner"]).scores
    np.testing.assert_array_equal(a["probability"], b["probability"])
    assert (b["Owner"] == "ann").all()
    partial = predictor.score_detailed(new.drop(columns="Revenue"), reasons=False)
    assert partial.stats["missing_column:Revenue"] == 40 and len(partial.scores) == 40
    with pytest.raises(DataError, match=r"list.csv: none of the model's 3 input columns is present"):
        predictor.score_detailed(pd.DataFrame({"Lead ID": ["a"], "Other": [1]}), source="list.csv")
    with pytest.raises(DataError, match=r"list.csv: missing required id column 'Lead ID'"):
        predictor.score_detailed(new.drop(columns="Lead ID"), source="list.csv")
    with pytest.raises(DataError, match=r"list.csv: column 'Visits': expected a number, found 'many'"):
        predictor.score_detailed(new.assign(Visits="many"), source="list.csv")


def _relational(tmp_path: Path) -> Path:
    """A small relational export: leads + accounts lookup + two activity tables + a deals table."""
    rng = np.random.default_rng(5)
    n = 1500
    created = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    accounts = pd.DataFrame({"acct": [f"A{i}" for i in range(100)], "segment": rng.choice(["smb", "ent"], 100)})
    leads = pd.DataFrame({"id": [f"L{i}" for i in range(n)], "created": created.strftime("%Y-%m-%d"),
                          "acct": rng.choice(accounts["acct"], n), "channel": rng.choice(["web", "event"], n)})
    visits = pd.DataFrame({"lead": rng.choice(leads["id"], 9000)})
    visits["at"] = leads.set_index("id").loc[visits["lead"], "created"].to_numpy()
    visits["at"] = (pd.to_datetime(visits["at"], utc=True)
                    + pd.to_timedelta(rng.integers(0, 30 * 86400, len(visits)), unit="s"))
    visits["page"] = rng.choice(["home", "pricing"], len(visits))
    mails = pd.DataFrame({"lead": rng.choice(leads["id"], 3000), "sent": visits["at"].sample(3000, random_state=1)
                          .to_numpy()})
    created_of = pd.to_datetime(leads.set_index("id").loc[visits["lead"], "created"].to_numpy(), utc=True)
    early = (visits["page"] == "pricing") & (visits["at"].to_numpy() <= created_of + pd.Timedelta(days=14))
    pricing = visits[early.to_numpy()].groupby("lead").size()
    p = 0.05 + 0.5 * leads["id"].map(pricing).fillna(0).clip(upper=3).to_numpy() / 3
    won = rng.random(n) < p
    deals = pd.DataFrame({"lead": leads["id"][won], "won_on": (created[won] + pd.Timedelta(days=30)).strftime(
        "%Y-%m-%d")})
    folder = tmp_path / "export"
    folder.mkdir()
    leads.to_csv(folder / "leads.csv", index=False)
    accounts.to_csv(folder / "accounts.csv", index=False, sep=";")
    visits.to_parquet(folder / "visits.parquet")
    mails.to_csv(folder / "mails.csv", index=False)
    deals.to_csv(folder / "deals.csv", index=False)
    config = {
        "dataset": {
            "leads": "export/leads.csv",
            "joins": [{"table": "export/accounts.csv", "by": "acct", "columns": ["segment"]}],
            "outcomes": {"table": "export/deals.csv", "lead_id": "lead", "time": "won_on"},
            "events": [{"table": "export/visits.parquet", "lead_id": "lead", "time": "at", "type": "page",
                        "prefix": "visit_"},
                       {"table": "export/mails.csv", "lead_id": "lead", "time": "sent", "type_value": "email"}],
        },
        "data": {"lead_id": "id", "created_at": "created", "exclude": {"acct": "identifier"}},
        "features": {"as_of_days": 14, "label_window_days": 60, "windows": [7, 14]},
        "checks": {"min_positives": 50, "min_negatives": 50},
    }
    path = tmp_path / "dataset.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_relational_dataset_config_trains_with_event_features(tmp_path):
    config = load_config(_relational(tmp_path))
    dataset, cfg = load_inputs(config)
    assert set(dataset.events["event_type"]) == {"visit_home", "visit_pricing", "email"}
    assert "segment" in dataset.leads.columns
    result = train_model(dataset.leads, dataset.outcomes, dataset.events, cfg)
    spec = result.bundle.spec
    assert "visit_pricing_14d" in spec.feature_names and "segment" in spec.categorical_vocab
    assert "acct" not in spec.feature_names and spec.dropped_columns["acct"] == "identifier"
    assert result.split.method == "time"
    assert result.metrics["model"]["roc_auc"] > 0.6  # pricing visits drive the label


def test_dataset_config_errors(tmp_path):
    path = _relational(tmp_path)
    text = path.read_text(encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("by: acct", "on: acct"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"joins\[0\]: unknown key \[True\].*YAML reads bare on/off/yes/no"):
        load_config(bad)
    accounts = tmp_path / "export" / "accounts.csv"
    accounts.write_text(accounts.read_text() + "A1;smb\n", encoding="utf-8")
    dataset_cfg = load_config(path)
    with pytest.raises(DataError, match=r"accounts.csv: column 'acct': duplicate key 'A1'"):
        load_inputs(dataset_cfg)


def test_check_data_writes_reports_and_flags_a_leak(tmp_path):
    path = _relational(tmp_path)
    config = load_config(path)
    report, files = check_data(config, report_dir=tmp_path / "report")
    assert not report.fatal
    assert json.loads(files["json"].read_text())["summary"]["labelled_leads"] == report.summary["labelled_leads"]
    assert "<table>" in files["html"].read_text()
    leads = pd.read_csv(tmp_path / "export" / "leads.csv")
    deals = pd.read_csv(tmp_path / "export" / "deals.csv")
    leads["deal_status"] = np.where(leads["id"].isin(deals["lead"]), "won", None)  # a value only once won ...
    leads["deal_amount"] = np.where(leads["id"].isin(deals["lead"]), np.arange(len(leads)) % 97 * 100.0, np.nan)
    leads.to_csv(tmp_path / "export" / "leads.csv", index=False)
    leaky, _ = check_data(load_config(path))
    assert {(p["check"], p["column"]) for p in leaky.fatal} == {("leak_auc", "deal_amount"),
                                                                 ("leak_missingness", "deal_amount")}
    assert leaky.flagged("outcome_name") == {"deal_amount"}
    # ... and a column that only ever holds one value is never a feature at all.
    assert "deal_status" not in leaky.flagged()
    assert leaky.columns.set_index("column").loc["deal_status", "role"] == "not used: constant"


def test_check_data_command_exit_codes(tmp_path):
    path = _relational(tmp_path)
    ok = subprocess.run([sys.executable, "-m", "leadscore", "check-data", "--config", str(path), "--report",
                         str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "Columns" in ok.stdout and (tmp_path / "r" / "data_checks.html").exists()
    leaky = subprocess.run([sys.executable, "-m", "leadscore", "check-data", "--config", str(path), "--json",
                            "--drop", "channel", "--allow", "segment"], capture_output=True, text=True, timeout=300)
    assert leaky.returncode == 0, leaky.stderr
    assert json.loads(leaky.stdout)["summary"]["features"] > 0


# ---- real data: skip cleanly where ../shared/data is absent ----------------------------------------------------

def _shared(name: str) -> Path:
    path = REPO.parent / "shared" / "data" / name
    if not path.exists():
        pytest.skip(f"{path} is absent (real data lives in ../shared/data beside the checkout)")
    return path


@pytest.mark.realdata
def test_x_education_flags_sales_assigned_leaks_and_trains_without_them():
    path = _shared("x_education_leads.csv")
    raw = TrainConfig(data=DataConfig(lead_id="Prospect ID", label="Converted", na_values=("Select",)))
    report, _ = check_data(raw, leads_path=path)
    assert {"Tags", "Lead Quality", "Lead Profile"} <= report.flagged()
    assert "Tags" in {p["column"] for p in report.fatal}
    config = load_config(REPO / "configs" / "x_education.yaml")
    dataset, cfg = load_inputs(config)
    result = train_model(dataset.leads, dataset.outcomes, dataset.events, cfg)
    assert result.metrics["model"]["roc_auc"] >= 0.88
    assert result.metrics["model"]["roc_auc"] >= result.metrics["baseline"]["roc_auc"]
    assert not {"Tags", "Lead Quality", "Lead Profile"} & set(result.bundle.spec.feature_names)


@pytest.mark.realdata
def test_olist_trains_with_a_time_split_and_reports_calibration_in_the_large():
    _shared("olist/olist_marketing_qualified_leads_dataset.csv")
    dataset, cfg = load_inputs(load_config(REPO / "configs" / "olist.yaml"))
    result = train_model(dataset.leads, dataset.outcomes, dataset.events, cfg)
    assert result.split.method == "time"
    test = result.test_frame
    assert test.as_of.min() >= result.frame.as_of[result.split.train].max()
    m = result.metrics["model"]
    assert m["calibration_in_the_large"] == pytest.approx(m["mean_probability"] - m["positive_rate"])
    assert abs(m["calibration_in_the_large"]) < 0.03  # calibrated on the later slice, not the early one
    assert m["roc_auc"] > 0.62


@pytest.fixture(scope="module")
def leadforge_bundle(tmp_path_factory):
    exe = shutil.which("leadforge") or str(Path(sys.executable).with_name("leadforge"))
    if not Path(exe).exists():
        pytest.skip("the leadforge package is not installed")
    root = tmp_path_factory.mktemp("leadforge")
    subprocess.run([exe, "generate", "--recipe", "b2b_saas_procurement_v1", "--seed", "1", "--mode",
                    "student_public", "--n-leads", "5000", "--out", str(root / "leadforge-bundle")],
                   check=True, capture_output=True, timeout=300)
    (root / "configs").mkdir()
    shutil.copy(REPO / "configs" / "leadforge.yaml", root / "configs" / "leadforge.yaml")
    return root / "configs" / "leadforge.yaml"


@pytest.mark.slow
def test_a_small_weak_task_file_nobody_prepared_ranks_like_the_logistic_baseline(tmp_path):
    """A leadforge task file as shipped (2,800 leads, weak signal): its creation column is found by its name, and
    a tree that shaves the CV log loss but ranks no better does not replace the logistic model (it used to: test
    ROC AUC 0.624 against the baseline's 0.658)."""
    exe = shutil.which("leadforge") or str(Path(sys.executable).with_name("leadforge"))
    if not Path(exe).exists():
        pytest.skip("the leadforge package is not installed")
    subprocess.run([exe, "generate", "--recipe", "b2b_saas_procurement_v1", "--seed", "42", "--mode",
                    "research_instructor", "--difficulty", "intro", "--n-leads", "4000", "--out",
                    str(tmp_path / "bundle")], check=True, capture_output=True, timeout=300)
    leads = pd.read_parquet(tmp_path / "bundle" / "tasks" / "converted_within_90_days" / "train.parquet")
    config = TrainConfig(data=DataConfig(lead_id="lead_id", label="converted_within_90_days",
                                         exclude={"current_stage": "the stage, filled in after the outcome"}))
    result = train_model(leads, config=config)
    assert result.counts["created_column_detected"] == "lead_created_at" and result.split.method == "time"
    table = result.candidates.set_index("candidate")
    chosen = table.index[table["chosen"]][0]
    assert not (table["cv_roc_auc"][[c for c in table.index if c.startswith("logistic")]]
                >= table.loc[chosen, "cv_roc_auc"]).any() or chosen.startswith("logistic")
    model, baseline = result.metrics["model"]["roc_auc"], result.metrics["baseline"]["roc_auc"]
    assert model >= baseline - 0.01, (chosen, model, baseline)
    assert result.params["verdict"]["verdict"] != "baseline_better"
    assert result.params["choice"].startswith(chosen + ":")


def test_leadforge_bundle_trains_through_the_config_with_event_features(leadforge_bundle):
    dataset, cfg = load_inputs(load_config(leadforge_bundle))
    result = train_model(dataset.leads, dataset.outcomes, dataset.events, cfg)
    names = result.bundle.spec.feature_names
    assert {"touch_email_30d", "session_pricing_page_30d", "sales_demo_30d", "opportunity_created_30d"} <= set(names)
    assert result.counts["lead_stats"]["events_used"] > 50_000
    assert result.metrics["model"]["roc_auc"] > 0.58


def test_leadforge_opportunity_stage_is_flagged_when_offered(leadforge_bundle, tmp_path):
    values = yaml.safe_load(leadforge_bundle.read_text())
    values["dataset"]["joins"].append({"table": "../leadforge-bundle/tables/opportunities.parquet", "by": "lead_id",
                                       "columns": ["stage"], "prefix": "opp_"})
    leaky = leadforge_bundle.with_name("leadforge_leaky.yaml")
    leaky.write_text(yaml.safe_dump(values), encoding="utf-8")
    report, _ = check_data(load_config(leaky))
    assert "opp_stage" in {p["column"] for p in report.fatal}
    with pytest.raises(DataCheckFailed, match="'opp_stage' alone ranks the label"):
        dataset, cfg = load_inputs(load_config(leaky))
        train_model(dataset.leads, dataset.outcomes, dataset.events, cfg)


def test_duplicates_across_chunks_go_to_rejects_with_file_rows(tmp_path):
    from leadscore.serve.batch import score_frames

    result = train_model(_flat(), config=_cfg(decimal="."))
    new = _flat(12, seed=4).drop(columns="Won")
    new.loc[10, "Lead ID"] = new.loc[1, "Lead ID"]  # same id in two different chunks
    new.loc[7, "Visits"] = "lots"
    out = score_frames(Predictor(result.bundle), new, tmp_path / "s.csv", chunk_size=5)
    rejects = pd.read_csv(out.rejects)
    assert out.scored_rows + out.rejected_rows == 12
    # Text in a number column is missing (as training reads it), counted, not a reject.
    assert dict(zip(rejects["input_row"], rejects["reject_reason"], strict=True)) == {
        11: "column 'Lead ID': duplicate lead id"}
    assert out.stats["not_a_number:Visits"] == 1


def test_day_first_dates_and_decimal_commas_are_not_misread():
    from leadscore.features.io import looks_formatted, parse_timestamps

    stamps = parse_timestamps(pd.Series(["03/04/2025", "13/04/2025"]), source="s", column="c")
    assert [t.month for t in stamps] == [4, 4]
    with pytest.raises(DataError, match="dates mix day-first and month-first order"):
        parse_timestamps(pd.Series(["13/04/2025", "04/13/2025"]), source="s", column="c")
    assert looks_formatted(pd.Series(["52,37", "7,5", "3"])) == "52,37"
    flat = _flat().drop(columns="Revenue").assign(Ratio=[f"{v},5" for v in range(600)])
    with pytest.raises(DataError, match="column 'Ratio': numbers are written with currency or thousands"):
        train_model(flat, config=_cfg(decimal=None))
    assert "Ratio" in train_model(flat, config=_cfg(decimal=",")).bundle.spec.numeric_columns


def test_events_without_the_configured_columns_are_a_one_line_error():
    leads = _flat().assign(created_at="2025-01-01")
    events = pd.DataFrame({"Lead ID": ["X00001"], "when": ["2025-01-02"], "type": ["visit"]})
    with pytest.raises(DataError, match="missing required event columns 'lead_id', 'timestamp', 'event_type'"):
        train_model(leads, events=events, config=_cfg(decimal="."))


def test_data_without_signal_is_called_out_and_the_rules_recommended():
    rng = np.random.default_rng(9)
    flat = _flat(1500).assign(Won=rng.choice(["0", "1"], 1500, p=[0.7, 0.3]))  # labels unrelated to anything
    result = train_model(flat, config=_cfg(decimal="."))
    verdict = result.params["verdict"]
    assert verdict["verdict"] == "no_signal"
    assert "Keep the rule score" in verdict["text"] and verdict["roc_auc_ci"][0] < 0.55


def test_signal_verdict_on_data_with_signal(trained):
    assert trained.params["verdict"]["verdict"] in ("model_better", "model_equal_to_baseline")
    assert trained.params["verdict"]["roc_auc_ci"][0] > 0.8


def test_leads_without_a_scoring_time_go_to_rejects_with_their_row(tmp_path):
    from leadscore.serve.batch import score_frames

    result = train_model(_flat(), config=_cfg(decimal="."))
    new = _flat(12, seed=5).drop(columns="Won").assign(as_of="2025-06-01")
    new.loc[3, "as_of"] = None
    new.loc[9, "as_of"] = "someday"
    out = score_frames(Predictor(result.bundle), new, tmp_path / "s.csv", chunk_size=5)
    rejects = pd.read_csv(out.rejects)
    assert out.scored_rows == 10 and out.rejected_rows == 2
    assert dict(zip(rejects["input_row"], rejects["reject_reason"], strict=True)) == {
        4: "column 'as_of': missing date/time", 10: "column 'as_of': not a date/time"}
