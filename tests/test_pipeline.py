"""Integration: training logged to a real SQLite MLflow store, the registry alias, and one scoring path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.features.config import TrainConfig
from leadscore.models.registry import load_bundle, load_pyfunc, pyfunc_input, registered_alias, run_summary
from leadscore.serve.predictor import Predictor


def test_run_holds_metrics_plots_spec_and_model(logged):
    result, run, _ = logged
    info = run_summary(run.run_id, tracking_uri=run.tracking_uri)
    assert info["status"] == "FINISHED"
    for name in ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_top_decile", "mae_vs_truth"):
        assert info["metrics"][f"test_model_{name}"] == pytest.approx(result.metrics["model"][name])
    assert info["metrics"]["test_baseline_roc_auc"] == pytest.approx(result.metrics["baseline"]["roc_auc"])
    assert {"plots/reliability.png", "plots/gains_lift.png", "plots/roc_pr.png", "plots/shap_summary.png",
            "plots/backtest.png", "plots/learning_curve.png", "feature_spec.json", "reports/metrics.json",
            "reports/report.html", "reports/model_card.md", "reports/data_checks.html",
            "model_card.md"} <= set(info["artifacts"])
    html = open(result.report_files["report_html"], encoding="utf-8").read()
    assert html.count("data:image/png;base64,") >= 6
    assert info["params"]["config.features.label_window_days"] == "90"
    assert info["tags"]["bundle_manifest_sha256"] == run.bundle_sha256


def test_model_card_is_logged_with_the_registered_version(logged):
    from mlflow import MlflowClient

    _, run, _ = logged
    client = MlflowClient(tracking_uri=run.tracking_uri)
    local = client.download_artifacts(run.run_id, "model_card.md")
    text = open(local, encoding="utf-8").read()
    assert text.startswith("# Model card: lead-conversion version 1 (champion)")
    for needed in ("90 days", "ROC AUC", "95%", "company"):
        assert needed in text


def test_first_version_is_champion_and_later_ones_challenger(logged, small_world):
    from mlflow import MlflowClient

    from leadscore.pipeline import train_and_log

    result, run, workdir = logged
    assert (run.version, run.alias) == ("1", "champion")
    assert registered_alias("lead-conversion", "champion", tracking_uri=run.tracking_uri) == "1"
    # Other tests of the session may have registered (and deleted) versions in this store (the API's reload
    # test does): the registry never reuses a number.
    client = MlflowClient(tracking_uri=run.tracking_uri, registry_uri=run.tracking_uri)
    latest = max(int(v.version) for v in client.search_model_versions("name='lead-conversion'"))
    _, second = train_and_log(small_world.leads, small_world.outcomes, small_world.events,
                              TrainConfig(seed=4, experiment="second"), workdir=workdir,
                              tracking_uri=run.tracking_uri, full_report=False)
    assert int(second.version) > latest and second.alias == "challenger"
    assert registered_alias("lead-conversion", "champion", tracking_uri=run.tracking_uri) == "1"


def test_pyfunc_model_and_predictor_give_identical_probabilities(logged, small_world):
    result, run, _ = logged
    predictor = Predictor.load("models:/lead-conversion@champion", tracking_uri=run.tracking_uri)
    test = result.test_frame
    leads = small_world.leads[small_world.leads["lead_id"].isin(test.ids)].copy()
    leads["as_of"] = pd.to_datetime(leads["created_at"], utc=True) + pd.Timedelta(days=14)
    from_raw = predictor.score(leads, small_world.events).set_index("lead_id")["probability"]

    pyfunc = load_pyfunc("models:/lead-conversion@champion", tracking_uri=run.tracking_uri)
    out = pyfunc.predict(pyfunc_input(result.bundle.spec, test.features))
    from_pyfunc = pd.Series(out["probability"].to_numpy(), index=test.ids.to_numpy())

    assert len(from_raw) == len(test) > 100
    np.testing.assert_allclose(from_raw.loc[from_pyfunc.index].to_numpy(), from_pyfunc.to_numpy(), rtol=0,
                               atol=1e-12)
    # ... and what training measured is what is served.
    measured = result.test_scores.set_index("lead_id")["probability"]
    np.testing.assert_allclose(from_raw.loc[measured.index].to_numpy(), measured.to_numpy(), atol=1e-12)
    assert set(out["band"]) <= set(result.bundle.bands.names)


def test_model_loads_by_registry_run_uri_and_local_path(logged, tmp_path):
    result, run, _ = logged
    features = result.test_frame.features.head(50)
    expected = Predictor(result.bundle).scorer.predict_proba_features(features)
    for uri in ("models:/lead-conversion@champion", "models:/lead-conversion/1", run.model_uri):
        bundle = load_bundle(uri, tracking_uri=run.tracking_uri)
        np.testing.assert_array_equal(Predictor(bundle).scorer.predict_proba_features(features), expected)
    result.bundle.save(tmp_path / "b")
    np.testing.assert_array_equal(
        Predictor.load(tmp_path / "b").scorer.predict_proba_features(features), expected)


def test_predictor_output_columns(logged, small_world):
    result, run, _ = logged
    predictor = Predictor(result.bundle)
    fresh = small_world.fresh_leads
    scored = predictor.score(fresh, small_world.fresh_events)
    assert scored.columns[:6].tolist() == ["lead_id", "as_of", "probability", "score", "band", "base_rate"]
    for k in (1, 2, 3):
        assert {f"reason_{k}_feature", f"reason_{k}_value", f"reason_{k}_contribution", f"reason_{k}"} <= \
            set(scored.columns)
    assert scored["lead_id"].tolist() == fresh["lead_id"].tolist()
    # Without an as_of argument the leads' own as_of column is used, so events after it are ignored.
    assert (scored["as_of"].to_numpy() == fresh["as_of"].to_numpy()).all()
    truth = small_world.fresh_truth.set_index("lead_id")["true_probability"]
    err = np.abs(scored["probability"].to_numpy() - scored["lead_id"].map(truth).to_numpy())
    assert err.mean() < 0.08


def test_scoring_as_of_a_later_date_sees_more_events(logged, small_world):
    result, _, _ = logged
    predictor = Predictor(result.bundle)
    fresh = small_world.fresh_leads.drop(columns="as_of")
    # As of just after the last fresh lead was created (earlier, a lead would be scored before it existed).
    first_day = pd.to_datetime(fresh["created_at"], utc=True).max() + pd.Timedelta(hours=1)
    early = predictor.score(fresh, small_world.fresh_events, as_of=first_day, reasons=False)
    late = predictor.score(fresh, small_world.fresh_events, as_of=small_world.data_end, reasons=False)
    assert (early["as_of"] < late["as_of"]).all()
    assert not np.allclose(early["probability"], late["probability"])


def test_tracking_uri_defaults_to_sqlite_in_workdir_and_honours_the_environment(tmp_path, monkeypatch):
    from leadscore.models.registry import default_tracking_uri

    assert default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert default_tracking_uri(tmp_path) == "http://127.0.0.1:5999"


def test_registry_calls_leave_no_tracking_uri_behind(logged, tmp_path):
    import os

    from leadscore.models.registry import default_tracking_uri

    _, run, _ = logged
    load_bundle("models:/lead-conversion@champion", tracking_uri=run.tracking_uri)
    load_pyfunc("models:/lead-conversion@champion", tracking_uri=run.tracking_uri)
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    assert default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_registry_loads_fail_closed_without_a_recorded_hash(logged):
    from leadscore.models.bundle import BundleError

    _, run, _ = logged
    with pytest.raises(BundleError, match="no bundle hash .* refusing to load"):
        load_bundle("models:/lead-conversion", tracking_uri=run.tracking_uri)
