"""Model behaviour: calibration helps on held-out data, reasons add up, bundles load only when intact."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit

from leadscore.models.bundle import BundleError, ModelBundle
from leadscore.models.calibration import IsotonicCalibrator, SigmoidCalibrator, calibrator_from_dict, select_calibration
from leadscore.models.explain import probability_contributions
from leadscore.models.metrics import expected_calibration_error
from leadscore.models.scorer import ModelScorer


def test_sigmoid_calibration_fixes_a_miscalibrated_margin_on_held_out_data():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(-2, 1.5, 40_000)
    y = (rng.random(true_logit.size) < expit(true_logit)).astype(int)
    margin = 2.5 * true_logit + 1.0  # overconfident and shifted, like an unregularised booster
    cal, test = slice(0, 20_000), slice(20_000, None)
    calibrator = SigmoidCalibrator().fit(margin[cal], y[cal])
    raw_brier = np.mean((expit(margin[test]) - y[test]) ** 2)
    cal_brier = np.mean((calibrator.predict(margin[test]) - y[test]) ** 2)
    assert cal_brier < raw_brier - 0.005
    assert calibrator.a_ == pytest.approx(0.4, abs=0.03) and calibrator.b_ == pytest.approx(-0.4, abs=0.1)
    assert expected_calibration_error(y[test], calibrator.predict(margin[test])) < 0.015


@pytest.mark.slow
def test_calibration_lowers_brier_of_an_overfit_booster_on_the_demo_test_slice(demo_trained):
    """An overfit LightGBM (big trees, no early stop) is overconfident; the calibration slice repairs it."""
    import dataclasses

    from leadscore.features.config import ModelConfig, TrainConfig
    from leadscore.training.train import train_model

    world, _ = demo_trained
    overfit = ModelConfig(learning_rate=0.3, num_leaves=63, min_child_samples=5, max_trees=300,
                          early_stopping_rounds=0, calibration="sigmoid", candidates=("lightgbm",))
    result = train_model(world.leads, world.outcomes, world.events,
                         dataclasses.replace(TrainConfig(seed=0), model=overfit))
    calibrated, raw = result.metrics["model"], result.metrics["model_uncalibrated"]
    assert calibrated["brier"] < raw["brier"] - 0.002
    assert calibrated["log_loss"] < raw["log_loss"] - 0.05
    assert calibrated["ece"] < raw["ece"]
    assert result.bundle.calibrator.a_ < 0.8  # it shrinks the overconfident margin


def test_calibration_does_not_hurt_a_well_fitted_booster(demo_trained):
    # Early-stopped LightGBM is already close to calibrated; calibration must not cost more than noise.
    _, result = demo_trained
    calibrated, raw = result.metrics["model"], result.metrics["model_uncalibrated"]
    assert calibrated["brier"] <= raw["brier"] + 0.0005
    assert calibrated["ece"] <= calibrated["ece_noise_p95"]


def test_probability_contributions_add_up_exactly():
    rng = np.random.default_rng(1)
    raw = rng.normal(0, 1, (500, 8))
    raw[:, -1] = -1.7
    raw[0, :-1] = 0.0  # a lead at the base: no contribution at all
    sigmoid = SigmoidCalibrator()
    sigmoid.a_, sigmoid.b_ = 0.8, -0.3
    base, contrib, p = probability_contributions(raw, sigmoid.predict)
    np.testing.assert_allclose(base + contrib.sum(axis=1), p, atol=1e-12)
    np.testing.assert_allclose(p, expit(0.8 * raw.sum(axis=1) - 0.3), atol=1e-12)
    # Signs follow the logit contributions.
    assert (np.sign(contrib[1:]) == np.sign(raw[1:, :-1])).all()


def test_scorer_reasons_add_up_on_a_model_with_missing_values_and_categorical_splits(trained):
    scorer = ModelScorer(trained.bundle)
    frame = trained.test_frame
    features = frame.features
    assert features.isna().any().any(), "the demo data must exercise missing values"
    assert trained.bundle.spec.categorical_columns, "the demo data must exercise categorical splits"
    assert "categorical" in trained.bundle.booster.model_to_string() or "cat_threshold" in \
        trained.bundle.booster.model_to_string()
    base, contrib, p = scorer.contributions(features)
    np.testing.assert_allclose(base + contrib.sum(axis=1).to_numpy(), p, atol=1e-6)
    np.testing.assert_allclose(p, scorer.predict_proba_features(features), atol=1e-12)
    scored = scorer.score_frame(frame)
    top = scored[["reason_1_contribution", "reason_2_contribution", "reason_3_contribution"]].abs().to_numpy()
    assert (np.diff(top, axis=1) <= 1e-15).all()  # reasons are the largest contributions, in order
    assert scored["score"].between(0, 100).all()
    assert set(scored["band"]) <= set(trained.bundle.bands.names)


def test_bundle_round_trip_and_integrity(trained, tmp_path):
    sha = trained.bundle.save(tmp_path / "bundle")
    loaded = ModelBundle.load(tmp_path / "bundle", expected_manifest_sha256=sha)
    features = trained.test_frame.features
    np.testing.assert_array_equal(ModelScorer(loaded).predict_proba_features(features),
                                  ModelScorer(trained.bundle).predict_proba_features(features))
    with pytest.raises(BundleError, match="does not match the one recorded"):
        ModelBundle.load(tmp_path / "bundle", expected_manifest_sha256="0" * 64)
    model = tmp_path / "bundle" / "model.txt"
    model.write_text(model.read_text().replace("learning_rate", "learning_rate "), encoding="utf-8")
    with pytest.raises(BundleError, match="model.txt: sha256 does not match manifest.json"):
        ModelBundle.load(tmp_path / "bundle")


def test_band_cutoffs_follow_capacity_shares(trained):
    scorer = ModelScorer(trained.bundle)
    # Cut-offs come from out-of-fold probabilities of the training leads; the held-out leads share their mix.
    held_out = trained.frame.subset(trained.split.test)
    bands = scorer.score_frame(held_out, reasons=False)["band"].value_counts(normalize=True)
    # Default shares: top 10% sales, next 20% telemarketing (integer cut-offs make it approximate).
    assert 0.05 <= bands.get("sales", 0) <= 0.16
    assert 0.12 <= bands.get("telemarketing", 0) <= 0.30


def test_margin_contributions_equal_shap_tree_explainer(trained):
    """Our reasons use LightGBM's pred_contrib; it must agree with shap.TreeExplainer (missing + categorical)."""
    import shap

    from leadscore.models.explain import margin_contributions

    X = trained.test_frame.X.head(300)
    ours = margin_contributions(trained.bundle.booster, X)
    explainer = shap.TreeExplainer(trained.bundle.booster)
    theirs = np.asarray(explainer.shap_values(X))
    np.testing.assert_allclose(ours[:, :-1], theirs, atol=1e-6)
    np.testing.assert_allclose(ours[:, -1], explainer.expected_value, atol=1e-6)


def test_isotonic_contributions_add_up_and_keep_signs():
    rng = np.random.default_rng(2)
    margin = rng.normal(-1.5, 1.2, 5000)
    y = (rng.random(5000) < expit(np.sign(margin) * margin ** 2 / 2 - 1)).astype(int)  # not a sigmoid shape
    iso = IsotonicCalibrator().fit(margin, y)
    raw = rng.normal(0, 0.6, (800, 6))
    raw[:, -1] = -1.5
    base, contrib, p = probability_contributions(raw, iso.predict)
    np.testing.assert_allclose(base + contrib.sum(axis=1), p, atol=1e-12)
    moved = np.abs(raw[:, :-1]) > 1e-12
    assert (np.sign(contrib[moved]) * np.sign(raw[:, :-1][moved]) >= 0).all()
    again = calibrator_from_dict(json.loads(json.dumps(iso.to_dict())))
    np.testing.assert_array_equal(again.predict(margin), iso.predict(margin))


def test_calibration_selection_by_cross_validated_log_loss():
    rng = np.random.default_rng(3)
    true_logit = rng.normal(-2, 1.5, 6000)
    y = (rng.random(6000) < expit(true_logit)).astype(int)
    # Already calibrated: sigmoid cannot beat "none" by more than noise.
    method, scores = select_calibration(true_logit, y)
    assert scores["none"] <= min(scores.values()) + 0.002
    # Overconfident margin: a recalibration wins clearly.
    method, scores = select_calibration(3 * true_logit + 2, y)
    assert method in ("sigmoid", "isotonic") and scores[method] < scores["none"] - 0.05
    # A bent (non-logistic) miscalibration: isotonic wins.
    bent = np.where(true_logit > -1, true_logit * 4, true_logit)
    method, scores = select_calibration(bent, y)
    assert method == "isotonic" and scores["isotonic"] < scores["sigmoid"]
    # Too few rows for isotonic: it is not even considered.
    _, scores = select_calibration(bent[:800], y[:800])
    assert "isotonic" not in scores


def test_auto_calibration_is_recorded_and_reasons_add_up_whatever_was_chosen(demo_trained):
    _, result = demo_trained
    chosen = result.params["calibration"]
    assert chosen in ("none", "sigmoid", "isotonic")
    cv = result.params["calibration_cv_log_loss"]
    # The simplest method within one standard error of the best: never far from the lowest loss.
    assert cv[chosen] <= min(cv.values()) + 0.002
    scorer = ModelScorer(result.bundle)
    base, contrib, p = scorer.contributions(result.test_frame.features)
    np.testing.assert_allclose(base + contrib.sum(axis=1).to_numpy(), p, atol=1e-6)
    train = result.frame.subset(result.split.train)
    iso = ModelScorer(ModelBundle(result.bundle.spec, result.bundle.model,
                                  IsotonicCalibrator().fit(result.bundle.model.margin(train.X), train.y),
                                  result.bundle.bands))
    base, contrib, p = iso.contributions(result.test_frame.features)
    np.testing.assert_allclose(base + contrib.sum(axis=1).to_numpy(), p, atol=1e-6)


def test_reasons_group_a_behaviour_into_one_field_that_adds_up_and_reads_as_words(trained):
    """The 7/30/90-day counts of one event type are one field; fields add up to probability - base rate; the
    reason names the field, its leading feature and a sentence from the model's label map."""
    from leadscore.models.scorer import ModelScorer
    from leadscore.models.wording import ReasonWording

    scorer = ModelScorer(trained.bundle)
    wording = scorer.wording
    spec = trained.bundle.spec
    assert "reason_labels" in trained.bundle.meta  # shipped with the model
    assert len(wording.fields) < len(spec.feature_names)
    pricing = [f for f, g in zip(wording.feature_names, wording.field_of, strict=True)
               if wording.fields[g] == "pricing_page_view"]
    assert pricing == [f"pricing_page_view_{w}d" for w in spec.windows]
    features = trained.test_frame.features
    base, contrib, p = scorer.contributions(features)
    grouped = wording.grouped(contrib.to_numpy())
    np.testing.assert_allclose(base + grouped.sum(axis=1), p, atol=1e-12)
    scored = scorer.score_frame(trained.test_frame)
    rows = np.arange(len(scored))
    for j in (1, 2, 3):
        field = scored[f"reason_{j}_field"].map({f: i for i, f in enumerate(wording.fields)}).to_numpy()
        np.testing.assert_allclose(scored[f"reason_{j}_contribution"], grouped[rows, field], atol=1e-15)
        members = [wording.fields[wording.field_of[list(spec.feature_names).index(f)]]
                   for f in scored[f"reason_{j}_feature"]]
        assert members == scored[f"reason_{j}_field"].tolist()
        assert not scored[f"reason_{j}"].str.contains("_").any()  # words, not column names
    top = scored[[f"reason_{j}_contribution" for j in (1, 2, 3)]].abs().to_numpy()
    assert (np.diff(top, axis=1) <= 1e-15).all()
    at = list(spec.feature_names).index(f"pricing_page_view_{min(spec.windows)}d")
    assert wording.sentence(at, 3.0) == f"Viewed the pricing page 3 times in the last {min(spec.windows)} days"
    assert wording.sentence(at, 1.0).endswith("once in the last 7 days") or min(spec.windows) != 7
    assert wording.sentence(at, 0.0).startswith("Has not viewed the pricing page")
    custom = ReasonWording(spec, {"fields": {"employees": "Company size"},
                                  "events": {"pricing_page_view": {"count": "Pricing page x{count} ({days}d)"}}})
    assert custom.sentence(list(spec.feature_names).index("employees"), 146.0) == "Company size: 146"
    assert custom.sentence(at, 2.0) == f"Pricing page x2 ({min(spec.windows)}d)"


def test_reason_label_overrides_are_checked():
    from leadscore.features.errors import ConfigError
    from leadscore.features.spec import FeatureSpec
    from leadscore.models.wording import default_labels

    spec = FeatureSpec(id_column="lead_id", created_column="created_at", as_of_days=7, label_window_days=90,
                       numeric_columns=("employees",), categorical_vocab={"industry": ("software",)},
                       event_types=("Demo Request",), negative_event_types=(), windows=(7, 30), half_life_days=14.0)
    labels = default_labels(spec, {"events": {"Demo Request": {"none": "No demo asked for in {days} days"}}})
    assert labels["events"]["demo_request"] == {"count": "Requested a demo {times} in the last {days} days",
                                                "none": "No demo asked for in {days} days"}
    for bad, message in (({"colour": {}}, "unknown key"), ({"fields": {"employees": 3}}, "expected a label"),
                         ({"events": {"demo_request": {"count": "{weeks}"}}}, "may use only")):
        with pytest.raises(ConfigError, match=message):
            default_labels(spec, bad)
