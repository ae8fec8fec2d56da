"""Model versus rules: metrics and CIs, capacity curve and headline, bands, cut-offs, report, MLflow; scorecard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from leadscore.models.rules import ColumnRuleScorer, RuleScorer, load_rules
from leadscore.models.scorecard import Scorecard, fit_scorecard
from leadscore.models.scoring import Scorer
from leadscore.presentation.comparison import write_comparison_report
from leadscore.training.compare import compare_model_and_rules, compare_scorers, compare_scores, recommend_cutoffs

ROOT = Path(__file__).resolve().parents[1]
X_EDUCATION = ROOT.parent / "shared" / "data" / "x_education_leads.csv"
LEAKY = ("Tags", "Lead Quality", "Lead Profile", "Asymmetrique Activity Index", "Asymmetrique Profile Index",
         "Asymmetrique Activity Score", "Asymmetrique Profile Score", "Lead Number")


def scored_frames(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A model with a strong signal and rules with a weak, heavily tied one, on the same synthetic leads."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * signal - 1.5)))).astype(int)
    prob = 1 / (1 + np.exp(-(2 * signal + rng.normal(scale=0.5, size=n) - 1.5)))
    rule = np.clip(np.round((signal + rng.normal(scale=1.5, size=n)) * 2) * 10 + 30, 0, 100)
    ids = [f"L{i:05d}" for i in range(n)]
    model = pd.DataFrame({"lead_id": ids, "probability": prob, "score": np.round(prob * 100).astype(int),
                          "band": np.select([prob > 0.5, prob > 0.2], ["sales", "telemarketing"], "nurture"),
                          "reason_1": "x", "reason_2": "y", "reason_3": "z"})
    rules = pd.DataFrame({"lead_id": ids, "score": rule,
                          "band": np.select([rule > 60, rule > 40], ["sales", "telemarketing"], "nurture")})
    labels = pd.DataFrame({"lead_id": ids, "label": y})
    return model, rules, labels


# ----------------------------------------------------------------------------------------------- compare_scores


def test_aucs_match_scikit_learn_and_curve_totals():
    model, rules, labels = scored_frames(2_000)
    c = compare_scores(model, rules, labels, n_boot=50)
    y = labels["label"].to_numpy()
    assert c.metrics["model"]["roc_auc"] == pytest.approx(roc_auc_score(y, model["probability"]), abs=1e-12)
    assert c.metrics["rules"]["roc_auc"] == pytest.approx(roc_auc_score(y, rules["score"]), abs=1e-12)
    assert c.metrics["model"]["pr_auc"] == pytest.approx(average_precision_score(y, model["probability"]), abs=1e-12)
    assert c.metrics["rules"]["pr_auc"] == pytest.approx(average_precision_score(y, rules["score"]), abs=1e-12)
    assert c.metrics["difference"]["roc_auc"] == pytest.approx(
        c.metrics["model"]["roc_auc"] - c.metrics["rules"]["roc_auc"])

    cap = c.capacity
    assert len(cap) == 100 and cap["share_of_leads"].iloc[0] == pytest.approx(0.01)
    last = cap.iloc[-1]
    assert last["leads_worked"] == 2_000
    assert last["model"] == pytest.approx(y.sum()) and last["rules"] == pytest.approx(y.sum())
    assert last["random"] == pytest.approx(y.sum())
    # Random order finds conversions in proportion to the leads worked: a straight line through 0.
    assert np.allclose(cap["random"], cap["leads_worked"] * y.mean())
    assert (np.diff(cap["model"]) >= -1e-9).all() and (np.diff(cap["rules"]) >= -1e-9).all()

    assert int(c.agreement.to_numpy().sum()) == c.n_leads == 2_000
    assert list(c.agreement.index) == ["nurture", "telemarketing", "sales"]
    for who in ("model", "rules"):
        d = c.deciles[c.deciles["scorer"] == who]
        assert list(d["decile"]) == list(range(1, 11))
        assert (d["leads"] == 200).all() and d["conversions"].sum() == y.sum()
        b = c.bands[c.bands["scorer"] == who]
        assert b["leads"].sum() == 2_000 and b["conversions"].sum() == y.sum()
    model_d = c.deciles[c.deciles["scorer"] == "model"]
    assert model_d["lift"].iloc[0] > 2 > model_d["lift"].iloc[-1]
    assert len(c.disagreements) == 20
    gaps = c.disagreements["percentile_gap"].abs().to_numpy()
    assert (np.diff(gaps) <= 1e-9).all()
    assert {"reason_1", "reason_2", "reason_3", "model_score", "rule_score"} <= set(c.disagreements.columns)
    assert any("random" in note and "seed" in note for note in c.notes)


def test_headline_arithmetic_by_hand():
    ids = list("abcdefghij")
    y = [1, 1, 0, 1, 0, 0, 0, 0, 0, 0]
    prob = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    rule = [50, 0, 50, 0, 50, 0, 0, 0, 0, 0]  # a three-way tie at the top: a (converts), c, e
    model = pd.DataFrame({"lead_id": ids, "probability": prob, "score": [round(p * 100) for p in prob],
                          "band": ["sales"] * 2 + ["nurture"] * 8})
    rules = pd.DataFrame({"lead_id": ids, "score": rule, "band": ["sales" if r else "nurture" for r in rule]})
    labels = pd.DataFrame({"lead_id": ids, "label": y})

    # Top 10% = 1 lead: the model's top lead converts; the rules pick one of 3 tied leads (1 converts): 1/3.
    c = compare_scores(model, rules, labels, n_boot=20)
    h = c.headline
    assert h["capacity_leads"] == 1
    assert h["model_conversions"] == pytest.approx(1.0)
    assert h["rules_conversions"] == pytest.approx(1 / 3)
    assert h["random_conversions"] == pytest.approx(0.3)
    assert h["extra_percent"] == pytest.approx(200.0)

    # 1 lead a week over 2 weeks = 2 leads: model a, b (2 conversions); rules 2 of the 3 tied (2/3).
    c = compare_scores(model, rules, labels, capacity_per_week=1, weeks=2, n_boot=20)
    h = c.headline
    assert h["capacity_leads"] == 2
    assert h["model_conversions"] == pytest.approx(2.0)
    assert h["rules_conversions"] == pytest.approx(2 / 3)
    assert h["extra_conversions"] == pytest.approx(4 / 3)
    assert h["extra_conversions_per_week"] == pytest.approx(2 / 3)
    assert h["extra_percent"] == pytest.approx(200.0)
    assert "capacity for 1 leads a week" in h["text"]
    assert "0.7 more conversions a week than the rules (+200%)" in h["text"]
    assert "1.0 vs 0.3 a week" in h["text"]
    assert c.capacity["model"].iloc[9] == pytest.approx(1.0)  # 10% of 10 leads
    assert c.capacity["rules"].iloc[29] == pytest.approx(1.0)  # the whole tie (3 leads) holds 1 conversion


def test_join_counts_dropped_leads():
    model, rules, labels = scored_frames(500)
    c = compare_scores(model.iloc[:480], rules.iloc[10:], labels.iloc[:490], n_boot=20)
    assert c.n_leads == 470
    assert c.counts["dropped_model_scores"] == 10
    assert c.counts["dropped_rule_scores"] == 20
    assert c.counts["dropped_labels"] == 20


def test_bootstrap_ci_contains_estimate_and_narrows_with_more_leads():
    widths = {}
    for n in (300, 4_000):
        model, rules, labels = scored_frames(n, seed=1)
        c = compare_scores(model, rules, labels, n_boot=300, seed=0)
        for who in ("model", "rules", "difference"):
            for key in ("roc_auc", "pr_auc"):
                low, high = c.metrics[who][f"{key}_ci"]
                assert low <= c.metrics[who][key] <= high, (n, who, key)
        widths[n] = {who: np.diff(c.metrics[who]["roc_auc_ci"])[0] for who in ("model", "rules", "difference")}
    for who in ("model", "rules", "difference"):
        assert widths[4_000][who] < 0.6 * widths[300][who]


def test_recommend_cutoffs_by_hand():
    scores = pd.DataFrame({"score": np.arange(100, 80, -1), "probability": np.arange(100, 80, -1) / 100,
                           "label": [1, 1, 1, 0] + [1, 0] * 3 + [0] * 10})
    cut = recommend_cutoffs(scores, weeks=2, sales_per_week=2, telemarketing_per_week=3).set_index("team")
    assert cut.loc["sales", "min_score"] == 97 and cut.loc["sales", "leads"] == 4
    assert cut.loc["telemarketing", "min_score"] == 91 and cut.loc["telemarketing", "leads"] == 6
    assert cut.loc["nurture", "leads"] == 10
    assert cut.loc["sales", "leads_per_week"] == 2
    assert cut.loc["sales", "expected_conversions"] == pytest.approx(1.00 + 0.99 + 0.98 + 0.97)
    assert cut.loc["sales", "observed_conversions"] == 3
    assert cut.loc["telemarketing", "observed_conversions_per_week"] == pytest.approx(1.5)
    # Defaults: 10% and 20% of the weekly volume (10 leads a week): 1 and 2 a week.
    cut = recommend_cutoffs(scores, weeks=2).set_index("team")
    assert cut.loc["sales", "min_score"] == 99 and cut.loc["telemarketing", "min_score"] == 95
    # Ties: capacity 2 but three leads share the top score: the closest fill is those three.
    tied = pd.DataFrame({"score": [90, 90, 90, 50, 50, 10, 10, 10, 10, 10]})
    cut = recommend_cutoffs(tied, None, 2, 2).set_index("team")
    assert cut.loc["sales", "leads"] == 3 and cut.loc["telemarketing", "min_score"] == 50


# ----------------------------------------------------------------------------------------------- scorecard


def scorecard_data(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "pricing_page_view_7d": rng.poisson(1.5, n).astype("float64"),
        "lead_source": rng.choice(["referral", "website", "purchased_list", "event"], n, p=[.2, .4, .3, .1]),
        "employees": np.exp(rng.normal(5, 1.5, n)),
        "noise": rng.normal(size=n),
    })
    frame.loc[rng.random(n) < 0.1, "employees"] = np.nan
    frame["lead_source"] = frame["lead_source"].astype("object").where(rng.random(n) > 0.05, None)
    logit = (-2 + 0.6 * np.minimum(frame["pricing_page_view_7d"], 4)
             + frame["lead_source"].map({"referral": 1.2, "website": 0.3, "purchased_list": -0.8}).fillna(0)
             + 0.3 * (np.log(frame["employees"]).fillna(5) - 5))
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, y


def test_scorecard_points_auc_table_and_round_trip():
    train, y_train = scorecard_data(6_000, seed=0)
    test, y_test = scorecard_data(4_000, seed=1)
    card = fit_scorecard(train, y_train)
    points = card.score(test)
    assert points.dtype.kind == "i"
    table = card.table()
    assert table["points"].map(lambda v: isinstance(v, int | np.integer)).all()
    auc_card = roc_auc_score(y_test, points)
    auc_single = roc_auc_score(y_test, test["pricing_page_view_7d"])
    auc_logistic = roc_auc_score(y_test, card.log_odds(test))
    assert auc_card > auc_single + 0.03
    assert abs(auc_card - auc_logistic) < 0.01
    bins = set(table["bin"])
    assert "lead_source = referral" in bins
    assert "lead_source is missing" in bins and "employees is missing" in bins
    assert any(b.startswith("pricing_page_view_7d in [") for b in bins)
    assert any(b.startswith("employees in [") for b in bins)
    assert table.iloc[0]["feature"] == "(base)"
    referral = table.loc[table["bin"] == "lead_source = referral", "points"].iloc[0]
    purchased = table.loc[table["bin"] == "lead_source = purchased_list", "points"].iloc[0]
    assert referral > purchased
    # Scaling: 20 points double the odds.
    assert card.factor_ == pytest.approx(20 / np.log(2))

    restored = Scorecard.from_dict(json.loads(json.dumps(card.to_dict())))
    assert np.array_equal(restored.score(test), points)
    assert restored.table().equals(table)
    # A level never seen in training scores like the average lead of that feature (0 points), not an error.
    odd = test.head(3).assign(lead_source="carrier_pigeon")
    assert len(card.score(odd)) == 3


def test_scorecard_drops_features_without_effect():
    rng = np.random.default_rng(0)
    n = 4_000
    frame = pd.DataFrame({"signal": rng.normal(size=n), "flat": np.zeros(n)})
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * frame["signal"]))).astype(int)
    card = fit_scorecard(frame, y)
    assert "flat" in card.dropped_features_
    assert set(card.table()["feature"]) == {"(base)", "signal"}


# ----------------------------------------------------------------------------------------------- demo end to end


@pytest.fixture(scope="module")
def demo_comparison(demo_trained):
    """The default demo world (20k leads, seed 0), its trained model and the published example rules."""
    from leadscore.serve.predictor import Predictor

    world, result = demo_trained
    comparison = compare_model_and_rules(Predictor(result.bundle), RuleScorer(load_rules(ROOT / "rules" /
                                                                                          "example.yaml")),
                                         world.leads, world.outcomes, world.events)
    return world, result, comparison


def test_demo_model_beats_rules_end_to_end(demo_comparison, tmp_path):
    world, result, c = demo_comparison
    # The model's test window: the same leads the model was evaluated on at training.
    assert c.n_leads == len(result.test_frame)
    assert c.window["kind"] == "model test window"
    assert c.window["weeks"] > 4
    m, r = c.metrics["model"], c.metrics["rules"]
    assert m["roc_auc"] == pytest.approx(result.metrics["model"]["roc_auc"], abs=1e-9)
    assert m["roc_auc"] > r["roc_auc"]
    assert c.metrics["difference"]["roc_auc_ci"][0] > 0
    h = c.headline
    assert h["capacity_share"] == pytest.approx(0.10, abs=0.001)
    assert h["model_conversions"] > h["rules_conversions"] > h["random_conversions"]

    files = write_comparison_report(c, tmp_path / "report")
    for key in ("html", "json", "deciles", "capacity", "bands", "agreement", "disagreements", "cutoffs"):
        assert files[key].exists() and files[key].stat().st_size > 0, key
    html = files["html"].read_text(encoding="utf-8")
    assert h["text"].split(":")[0] in html
    assert f"{m['roc_auc']:.3f}" in html and f"{r['roc_auc']:.3f}" in html
    assert f"{c.n_leads:,} leads" in html
    assert html.count("data:image/png;base64,") == 3
    best = c.capacity.loc[c.capacity["share_of_leads"].round(2) == 0.1, "best_possible"].iloc[0]
    assert f">{int(best):,}<" in html and f">{best:,.1f}<" not in html  # a whole count reads as one
    summary = json.loads(files["json"].read_text(encoding="utf-8"))
    assert summary["headline"]["model_conversions"] == pytest.approx(h["model_conversions"])
    assert summary["n_leads"] == c.n_leads
    assert pd.read_csv(files["capacity"]).shape[0] == 100

    train = result.frame.subset(result.split.train)
    card = fit_scorecard(train.features, train.y)
    test = result.test_frame
    auc_card = roc_auc_score(test.y, card.score(test.features))
    assert auc_card > r["roc_auc"]


# ----------------------------------------------------------------------------------------------- MLflow


def test_log_comparison_to_sqlite_store(tmp_path):
    from leadscore.models.registry import log_comparison, run_summary

    model, rules, labels = scored_frames(400)
    c = compare_scores(model, rules, labels, n_boot=20)
    files = write_comparison_report(c, tmp_path / "report")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_id = log_comparison(tracking_uri=uri, experiment="lead-comparison", files=files, metrics=c.flat_metrics(),
                            run_name="model-vs-rules")
    summary = run_summary(run_id, tracking_uri=uri)
    assert summary["status"] == "FINISHED"
    assert summary["metrics"]["model_roc_auc"] == pytest.approx(c.metrics["model"]["roc_auc"])
    assert summary["metrics"]["headline_model_conversions"] == pytest.approx(c.headline["model_conversions"])
    assert "comparison/report.html" in summary["artifacts"]
    assert "comparison/capacity_curve.csv" in summary["artifacts"]


# ----------------------------------------------------------------------------------------------- X Education


@pytest.mark.realdata
def test_x_education_model_vs_rules_and_scorecard():
    if not X_EDUCATION.exists():
        pytest.skip(f"{X_EDUCATION} is absent (real data lives in ../shared/data beside the checkout)")
    from leadscore.features.config import DataConfig, TrainConfig
    from leadscore.features.io import read_table
    from leadscore.serve.predictor import Predictor
    from leadscore.training.train import train_model

    leads = read_table(X_EDUCATION)
    config = TrainConfig(seed=0, data=DataConfig(lead_id="Prospect ID", label="Converted", exclude=LEAKY,
                                                 na_values=("Select",)))
    result = train_model(leads, None, None, config)
    assert not set(LEAKY) & set(result.bundle.spec.feature_names)
    # No dates: a random split. Compare on the held-out leads only, so the model is not judged on its training.
    test_ids = set(result.test_frame.ids)
    held_out = leads[leads["Prospect ID"].str.strip().isin(test_ids).to_numpy()]
    rules = RuleScorer.load(ROOT / "rules" / "x_education.yaml", id_column="Prospect ID")
    c = compare_model_and_rules(Predictor(result.bundle), rules, held_out, n_boot=200)
    assert c.n_leads == len(test_ids)
    assert "no time-split test window" in c.window["kind"]
    m, r = c.metrics["model"]["roc_auc"], c.metrics["rules"]["roc_auc"]
    assert m > r > 0.7
    assert c.headline["model_conversions"] >= c.headline["rules_conversions"]

    train = result.frame.subset(result.split.train)
    card = fit_scorecard(train.features, train.y)
    test = result.test_frame
    assert roc_auc_score(test.y, card.score(test.features)) > r


# ----------------------------------------------------------------------------------------------- one bootstrap, scorers


def test_card_verdict_and_comparison_give_the_same_intervals(demo_comparison):
    """One bootstrap: the same model on the same leads gets the same interval in the card, verdict and comparison."""
    from leadscore.models.metrics import bootstrap_metrics, interval
    from leadscore.training.evaluate import baseline_probabilities, signal_verdict

    _, result, c = demo_comparison
    y = result.test_frame.y
    p = result.test_scores["probability"].to_numpy()
    card = bootstrap_metrics(y, {"model": p, "baseline": baseline_probabilities(result)}, seed=result.config.seed)
    _, low, high = interval(card, "model", "roc_auc")
    assert c.metrics["model"]["roc_auc_ci"] == pytest.approx([low, high], abs=1e-12)
    verdict = signal_verdict(y, p, baseline_probabilities(result), seed=result.config.seed)
    assert verdict["roc_auc_ci"] == pytest.approx([low, high], abs=1e-12)
    assert result.params["verdict"]["roc_auc_ci"] == pytest.approx([low, high], abs=1e-12)


def test_demo_scorecard_is_short_monotone_and_states_its_cost(demo_comparison, tmp_path):
    _, _, c = demo_comparison
    sc, table = c.scorecard, c.scorecard_table
    assert len(table) <= 40 and sc["n_rows"] == len(table)
    assert sc["monotone"] and all(sc["monotone"].values())
    assert sc["model_minus_scorecard"] == pytest.approx(c.metrics["model"]["roc_auc"] - sc["roc_auc"], abs=1e-9)
    assert sc["roc_auc"] > c.metrics["rules"]["roc_auc"]
    page = write_comparison_report(c, tmp_path)["html"].read_text(encoding="utf-8")
    assert "gives up" in page and f"{sc['model_minus_scorecard']:.3f} ROC AUC against the model" in page


def test_scorecard_is_monotone_and_within_its_row_budget():
    train, y = scorecard_data(5_000, seed=3)
    rng = np.random.default_rng(3)
    for k in range(25):  # many weak inputs: the budget, not the data, bounds the table
        train[f"weak_{k}"] = rng.poisson(1 + k % 4, len(y)) + 0.3 * y * rng.random(len(y))
    # A count whose raw conversion rate zig-zags: the points must still move one way.
    train["unsubscribe_30d"] = np.minimum(rng.poisson(1.0, len(y)), 4) * (1 - 0.5 * y)
    card = fit_scorecard(train, y, max_rows=40)
    table = card.table()
    assert len(table) <= 40
    assert card.monotone_features() and all(card.monotone_features().values())
    for feature, part in table.groupby("feature"):
        numeric = part[~part["bin"].str.endswith(" is missing")]
        if feature in card.monotone_features():
            steps = np.diff(numeric["points"].to_numpy())
            assert (steps >= 0).all() or (steps <= 0).all(), feature


def test_any_two_scorers_compare_in_one_call():
    from leadscore.serve.predictor import Predictor

    assert issubclass(RuleScorer, Scorer) and issubclass(ColumnRuleScorer, Scorer) and issubclass(Predictor, Scorer)
    model, rules, labels = scored_frames(600, seed=2)
    leads = pd.DataFrame({"lead_id": model["lead_id"], "new_points": model["probability"] * 100,
                          "old_points": rules["score"]})
    c = compare_scorers(ColumnRuleScorer("new_points"), ColumnRuleScorer("old_points"), leads, labels,
                        names=("new points", "old points"))
    assert c.n_leads == 600 and c.names == {"model": "new points", "rules": "old points"}
    assert c.metrics["model"]["roc_auc"] == pytest.approx(roc_auc_score(labels["label"], model["probability"]),
                                                          abs=1e-9)
    assert "the new points finds" in c.headline_text and "than the old points" in c.headline_text
