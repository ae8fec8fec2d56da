"""Drift and expected performance on every scored batch, and the later check against what happened."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.models.drift import expected_roc_auc, monitor, psi
from leadscore.serve.batch import score_frames
from leadscore.serve.predictor import Predictor


def test_psi_is_zero_on_the_reference_and_large_on_a_shift():
    shares = [0.25, 0.25, 0.25, 0.25]
    assert psi(shares, [2500, 2500, 2500, 2500]) < 1e-3
    assert psi(shares, [7000, 1000, 1000, 1000]) > 0.25


def test_expected_roc_auc_equals_the_pairwise_definition_and_simulations():
    rng = np.random.default_rng(0)
    p = np.round(rng.beta(1, 5, size=200), 2)  # with ties
    num = den = 0.0
    for i in range(len(p)):
        for j in range(len(p)):
            if i != j:
                w = p[i] * (1 - p[j])
                den += w
                num += w * (1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0)
    assert expected_roc_auc(p) == pytest.approx(num / den, abs=1e-12)
    from sklearn.metrics import roc_auc_score

    q = rng.beta(1, 8, size=4000)
    simulated = np.mean([roc_auc_score(rng.random(len(q)) < q, q) for _ in range(100)])
    assert expected_roc_auc(q) == pytest.approx(simulated, abs=0.005)


@pytest.fixture(scope="module")
def same_world():
    """A larger batch from the training world (same generator, other leads)."""
    from leadscore.demo_world import generate_demo_world

    world = generate_demo_world(n_leads=6_000, seed=3, n_fresh=2_000)
    return world.fresh_leads.drop(columns=["as_of"]), world.fresh_events, world.fresh_truth


def test_a_batch_from_the_training_world_is_not_flagged_and_a_shifted_channel_mix_is(trained, same_world,
                                                                                       tmp_path):
    predictor = Predictor(trained.bundle)
    leads, events, _ = same_world
    same = score_frames(predictor, leads, tmp_path / "same.csv", events=events, as_of="created", reasons=False)
    assert same.drift is not None and same.drift["n"] == len(leads)
    assert same.drift["shifted"] == [], same.drift["feature_psi"]
    assert same.drift["text"] == []
    # Another world's channel mix: mostly purchased lists and email campaigns.
    weak = leads["lead_source"].isin(["purchased_list", "email_campaign"])
    shifted_leads = pd.concat([leads[weak], leads[~weak].sample(frac=0.1, random_state=1)])
    shifted = score_frames(predictor, shifted_leads, tmp_path / "shifted.csv", events=events, as_of="created",
                           reasons=False)
    assert "lead_source" in shifted.drift["shifted"]
    assert any(line.startswith("lead_source mix shifted: PSI") for line in shifted.drift["text"])
    assert shifted.drift["expected_conversion_rate"] < same.drift["expected_conversion_rate"]


def test_expected_conversions_and_monitor_against_outcomes(trained, same_world, tmp_path):
    predictor = Predictor(trained.bundle)
    leads, events, truth = same_world
    result = score_frames(predictor, leads, tmp_path / "s.csv", events=events, as_of="created", reasons=False)
    scored = pd.read_csv(tmp_path / "s.csv")
    assert result.drift["expected_conversions"] == pytest.approx(scored["probability"].sum())
    # Outcomes drawn from the true probabilities: within noise. Drawn at half of them: beyond noise.
    p_true = scored["lead_id"].map(truth.set_index("lead_id")["true_probability"]).to_numpy()
    as_of = pd.to_datetime(scored["as_of"], utc=True)
    data_end = as_of.max() + pd.Timedelta(days=120)
    for factor, beyond in ((1.0, False), (0.4, True)):
        rng = np.random.default_rng(7)
        won = rng.random(len(p_true)) < p_true * factor
        converted = pd.Series((as_of + pd.Timedelta(days=10)).to_numpy(), index=scored["lead_id"].astype(str))[won]
        report = monitor(scored, converted, window_days=90, data_end=data_end)
        assert report["rows"][0]["leads"] == len(scored) and report["pending"] == 0
        assert report["rows"][0]["beyond_noise"] is beyond, report["rows"][0]
    # The command: plain and JSON.
    outcomes = pd.DataFrame({"lead_id": scored["lead_id"],
                             "converted_at": np.where(won, (as_of + pd.Timedelta(days=10)).astype(str), "")})
    outcomes.to_csv(tmp_path / "outcomes.csv", index=False)
    run = CliRunner().invoke(app, ["monitor", "--scored", str(tmp_path / "s.csv"), "--outcomes",
                                   str(tmp_path / "outcomes.csv"), "--data-end", str(data_end.date()), "--json"])
    assert run.exit_code == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["rows"][0]["beyond_noise"] is True and "below what the scores promised" in answer["verdict"]
    plain = CliRunner().invoke(app, ["monitor", "--scored", str(tmp_path / "s.csv"), "--outcomes",
                                     str(tmp_path / "outcomes.csv"), "--data-end", str(data_end.date())])
    assert plain.exit_code == 0 and "Expected vs observed" in plain.stdout and "band" in plain.stdout


def test_score_command_prints_expected_conversions_and_drift(trained, same_world, tmp_path):
    leads, events, _ = same_world
    trained.bundle.save(tmp_path / "model")
    leads.to_csv(tmp_path / "leads.csv", index=False)
    events.to_csv(tmp_path / "events.csv", index=False)
    run = CliRunner().invoke(app, ["score", "--model", str(tmp_path / "model"), "--leads", str(tmp_path / "leads.csv"),
                                   "--events", str(tmp_path / "events.csv"), "--out", str(tmp_path / "o.csv"),
                                   "--as-of", "created", "--no-reasons"])
    assert run.exit_code == 0, run.stderr
    assert "Expected conversions:" in run.stdout and "expected ROC AUC" in run.stdout
    assert "Drift: none" in run.stdout


@pytest.mark.slow
def test_a_scoring_run_is_logged_beside_its_model_with_an_html_page(logged, same_world, tmp_path):
    """Counts, expected conversions and PSI land in MLflow, linked to the model version; --report writes the page."""
    from mlflow import MlflowClient

    _, run, _ = logged
    leads, events, _ = same_world
    leads.head(300).to_csv(tmp_path / "leads.csv", index=False)
    events.to_csv(tmp_path / "events.csv", index=False)
    shifted = leads[leads["lead_source"].isin(["purchased_list", "email_campaign"])].head(300)
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    args = ["score", "--model", "models:/lead-conversion@champion", "--tracking-uri", run.tracking_uri,
            "--events", str(tmp_path / "events.csv"), "--as-of", "created", "--no-reasons", "--json"]
    out = CliRunner().invoke(app, [*args, "--leads", str(tmp_path / "shifted.csv"), "--out", str(tmp_path / "o.csv"),
                                   "--report", str(tmp_path / "o.html")])
    assert out.exit_code == 0, out.stderr
    answer = json.loads(out.stdout)
    client = MlflowClient(tracking_uri=run.tracking_uri)
    scoring = client.get_run(answer["run_id"])
    assert scoring.data.tags["leadscore.kind"] == "scoring"
    assert scoring.data.tags["leadscore.model_version"] == scoring.data.params["model_version"] != ""
    assert scoring.data.metrics["scored_rows"] == answer["scored_rows"] == 300
    assert scoring.data.metrics["expected_conversions"] == pytest.approx(answer["drift"]["expected_conversions"])
    assert scoring.data.metrics["psi.lead_source"] == pytest.approx(answer["drift"]["feature_psi"]["lead_source"])
    assert "lead_source mix shifted" in scoring.data.tags["leadscore.drift"]
    names = {a.path for a in client.list_artifacts(answer["run_id"], "scoring")}
    assert names == {"scoring/report.html", "scoring/summary.json"}
    page = (tmp_path / "o.html").read_text()
    assert "Drift against training" in page and "lead_source" in page and "shifted" in page
    assert "Scored 300 of 300 leads." in page
    # Opting out logs nothing.
    before = len(client.search_runs([scoring.info.experiment_id]))
    quiet = CliRunner().invoke(app, [*args, "--leads", str(tmp_path / "leads.csv"), "--out", str(tmp_path / "q.csv"),
                                     "--no-log-run"])
    assert quiet.exit_code == 0 and json.loads(quiet.stdout)["run_id"] is None
    assert len(client.search_runs([scoring.info.experiment_id])) == before
