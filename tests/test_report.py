"""The evaluation report: files, self-contained HTML, model card, backtest, segments and learning curve."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from leadscore.demo_world import generate_demo_world
from leadscore.features.config import TrainConfig

PNG_TAG = '<img src="data:image/png;base64,'


@pytest.fixture(scope="module")
def trained_8k():
    from leadscore.training.train import train_model

    world = generate_demo_world(n_leads=8000, seed=1)
    return train_model(world.leads, world.outcomes, world.events, TrainConfig(seed=1))


@pytest.fixture(scope="module")
def report(trained_8k, tmp_path_factory):
    from leadscore.presentation.model_report import write_report

    directory = tmp_path_factory.mktemp("report")
    return trained_8k, write_report(trained_8k, directory, version="7")


def test_every_file_is_written_and_not_empty(report):
    _, files = report
    names = {p.name for p in files.values()}
    expected = {"reliability.png", "gains_lift.png", "roc_pr.png", "bands.png", "shap_summary.png", "dependence.png",
                "learning_curve.png", "backtest.png", "model_card.md", "segments.csv", "backtest.csv",
                "learning_curve.csv", "report.html"}
    assert expected <= names
    for path in files.values():
        assert path.exists() and path.stat().st_size > 0, path
    for key, path in files.items():
        assert key.startswith("plots_") == (path.suffix == ".png")  # the caller groups artifacts by key


def test_html_is_self_contained_and_shows_the_metrics(report):
    from leadscore.presentation.format import METRICS, metric

    result, files = report
    page = files["report_html"].read_text(encoding="utf-8")
    n_png = sum(1 for p in files.values() if p.suffix == ".png")
    assert page.count(PNG_TAG) == n_png
    metrics_section = page[page.index("<h2>Test metrics</h2>"): page.index("<h2>Plots</h2>")]
    assert f">{metric('roc_auc', result.metrics['model']['roc_auc'])} (" in metrics_section  # with its interval
    assert f">{metric('roc_auc', result.metrics['baseline']['roc_auc'])} (" in metrics_section
    # Every metric by its plain label and meaning, never by its key.
    for key in ("roc_auc", "ece", "ece_noise_p95", "calibration_in_the_large"):
        assert METRICS[key].label in metrics_section and METRICS[key].meaning in metrics_section
    assert "ece_noise_p95" not in page and "mae_vs_truth" not in page
    for external in ("<script", "<link", "http://", "https://", "src=\"http"):
        assert external not in page
    assert "<h2>Model card: lead conversion model 7</h2>" in page  # the card, rendered
    summary = page[page.index("<section class=\"summary\">"): page.index("</section>")]
    assert 2 <= summary.count("<p>") <= 4 and "the 10% it scores highest convert at" in summary
    # The segments appear once (in the card), as percentages, not a second time as fractions.
    assert page.count("Test slice by segment") == 1


def test_model_card_states_label_exclusions_and_confidence_intervals(report):
    result, files = report
    card = files["report_model_card"].read_text(encoding="utf-8")
    spec = result.bundle.spec
    assert f"within {spec.label_window_days} days after as_of" in card
    assert f"as_of = `created_at` + {spec.as_of_days} days" in card
    assert spec.dropped_columns, "the demo has an identifier-like company column"
    for column, reason in spec.dropped_columns.items():
        assert f"| {column} | {reason} |" in card
    ci = re.findall(r"([+-]?\d+\.\d+) \[([+-]?\d+\.\d+), ([+-]?\d+\.\d+)\]", card)
    assert len(ci) >= 10  # five metrics for the model and the baseline
    for point, low, high in ci:
        assert float(low) <= float(point) <= float(high)
    assert "## Intended use and limits" in card and "ROC AUC 0.6" in card
    for band, cutoff in zip(result.bundle.bands.names[1:], result.bundle.bands.cutoffs, strict=True):
        assert f"{band} >= {cutoff}" in card


def test_backtest_folds_move_forward_and_never_train_on_the_future(report):
    from leadscore.training.backtest import as_of_periods

    result, files = report
    folds = pd.read_csv(files["report_backtest"])
    assert len(folds) >= 3
    assert (folds["roc_auc"] > 0.75).sum() >= 3
    periods = [pd.Period(p, "M") for p in folds["test_period"]]
    assert all(a < b for a, b in zip(periods, periods[1:], strict=False))
    test_start = pd.to_datetime(folds["test_start"], utc=True)
    train_end = pd.to_datetime(folds["train_end"], utc=True)
    assert (train_end < test_start).all()
    cal = [pd.Period(p, "M") for p in folds["calibration_period"]]
    assert all(c < t for c, t in zip(cal, periods, strict=True))
    # The recorded training size is exactly the leads before the calibration month: nothing later leaked in.
    month = as_of_periods(result.frame.as_of)
    for c, n_train in zip(cal, folds["n_train"], strict=True):
        assert n_train == int((month < c).sum())


def test_segment_metrics_cover_the_test_slice(report):
    from leadscore.training.backtest import segment_metrics

    result, files = report
    segments = pd.read_csv(files["report_segments"], keep_default_na=False, na_values=[""])
    n_test = int(result.split.test.sum())
    assert set(segments["column"]) == {"lead_source", "industry", "country"}
    for _, part in segments.groupby("column"):
        assert part["n"].sum() == n_test
    rate = segments[segments["column"] == "lead_source"].set_index("segment")["rate"]
    assert rate["referral"] > rate["purchased_list"]
    direct = segment_metrics(result.test_scores, result.test_frame, ["no_such_column", "lead_source", "employees"])
    assert list(dict.fromkeys(direct["column"])) == ["lead_source", "employees"]
    assert direct.loc[direct["column"] == "employees", "n"].sum() == n_test
    auc = direct.loc[direct["column"] == "lead_source", "roc_auc"].to_numpy()
    ranked = auc[~np.isnan(auc)]
    assert (np.diff(ranked) >= 0).all()  # weakest segments first
    assert np.isnan(auc[len(ranked):]).all()


def test_learning_curve_more_data_does_not_hurt(report):
    _, files = report
    curve = pd.read_csv(files["report_learning_curve"]).sort_values("fraction")
    assert len(curve) >= 4
    assert curve["n_train"].is_monotonic_increasing
    assert curve["roc_auc"].iloc[-1] >= curve["roc_auc"].iloc[0] - 0.01


def test_learning_curve_refits_the_runs_own_trees(report):
    """The curve fits the run's own LightGBM: the preset the cross-fit chose, at the chosen model's tree count."""
    from leadscore.training.backtest import _tree_params

    result, files = report
    assert result.params["tree_preset"] in ("lightgbm", "lightgbm_defaults", "lightgbm_small")
    booster = result.bundle.model.booster
    params = _tree_params(result, int(result.split.train.sum()))
    for key in ("learning_rate", "num_leaves", "min_data_in_leaf"):
        assert booster.params[key] == params[key], key
    curve = pd.read_csv(files["report_learning_curve"])
    assert (curve["n_trees"] == booster.num_trees()).all()


def test_report_backtests_the_latest_months_with_the_runs_own_trees(report):
    from leadscore.training.report import BACKTEST_FOLDS

    result, files = report
    folds = pd.read_csv(files["report_backtest"])
    assert 1 <= len(folds) <= BACKTEST_FOLDS
    assert (pd.to_datetime(folds["train_end"]) < pd.to_datetime(folds["test_start"])).all()
    assert (folds["n_trees"] == result.bundle.model.booster.num_trees()).all()  # one fit of the run's trees


def test_a_test_month_cut_short_is_not_a_backtest_fold(trained_8k):
    """A month thinned to a tenth of its leads (as where the labelled data ends mid-month) is not tested; the
    other months still are."""
    from leadscore.training.backtest import as_of_periods, rolling_backtest, run_trees

    frame, config = trained_8k.frame, trained_8k.config
    params, _ = run_trees(trained_8k)
    whole = rolling_backtest(frame, config, max_folds=4, trees=(params, 20))
    assert len(whole) >= 3
    target = whole["test_period"].iloc[1]
    month = as_of_periods(frame.as_of).astype(str).to_numpy()
    keep = (month != target) | (np.arange(len(month)) % 10 == 0)
    thinned = rolling_backtest(frame.subset(keep), config, max_folds=4, trees=(params, 20))
    assert list(thinned["test_period"]) == [p for p in whole["test_period"] if p != target]


def test_report_fits_are_capped_on_large_slices_and_reuse_the_runs_model():
    """Above `max_fit_rows` the learning curve stops fitting and its full point is the run's own model (the same
    numbers as its test metrics); backtest folds train on their latest `max_train_rows` leads only."""
    import dataclasses

    from leadscore.training.backtest import learning_curve, rolling_backtest
    from leadscore.training.train import train_model

    world = generate_demo_world(n_leads=6000, seed=3)
    config = TrainConfig(seed=3)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, crossfit_max_rows=0))
    result = train_model(world.leads, world.outcomes, world.events, config)
    assert result.params["learner"] == "lightgbm"  # not cross-fitted: a calibration slice of its own
    n_train = int(result.split.train.sum())
    cap = n_train // 3
    curve = learning_curve(result, max_fit_rows=cap)
    assert curve["n_train"].iloc[-1] == n_train and (curve["n_train"].iloc[:-1] <= cap).all()
    assert len(curve) >= 3 and curve["n_train"].is_monotonic_increasing
    assert curve["roc_auc"].iloc[-1] == pytest.approx(result.metrics["model"]["roc_auc"], abs=1e-12)
    free = rolling_backtest(result.frame, config, max_folds=3)
    capped = rolling_backtest(result.frame, config, max_folds=3, max_train_rows=cap)
    assert len(capped) == len(free) >= 1
    assert (capped["n_train"] <= cap).all() and (free["n_train"] > cap).any()
    assert (pd.to_datetime(capped["train_end"]) < pd.to_datetime(capped["test_start"])).all()
    # The latest leads: the window starts later than all of the past does, and ends at the same time.
    assert (pd.to_datetime(capped["train_start"]) >= pd.to_datetime(free["train_start"])).all()
    assert (capped["train_end"] == free["train_end"]).all()


def test_ece_noise_floor_is_the_ece_of_labels_drawn_from_the_probabilities_themselves():
    """The vectorised floor equals drawing the labels one replicate at a time from the same generator."""
    from leadscore.models.metrics import ece_noise_floor, expected_calibration_error

    rng = np.random.default_rng(4)
    for p in (rng.beta(1, 6, 3001), np.r_[np.zeros(20), np.ones(7), rng.random(40)], rng.random(1)):
        draws_rng = np.random.default_rng(9)
        draws = np.array([expected_calibration_error(draws_rng.random(len(p)) < p, p) for _ in range(150)])
        mean, p95 = ece_noise_floor(p, n_draws=150, seed=9)
        assert mean == pytest.approx(draws.mean(), abs=1e-12)
        assert p95 == pytest.approx(np.quantile(draws, 0.95), abs=1e-12)
    assert all(np.isnan(v) for v in ece_noise_floor(np.array([])))


def test_bootstrap_points_match_scikit_learn_and_intervals_contain_them():
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    from leadscore.models.metrics import bootstrap_metrics, expected_calibration_error

    rng = np.random.default_rng(0)
    p = np.round(rng.beta(1, 6, 3000), 3)  # rounded: ties must be handled like scikit-learn does
    y = (rng.random(3000) < p).astype(int)
    ci = bootstrap_metrics(y, {"a": p, "b": np.clip(p + 0.02, 0, 1)}, n_boot=100, seed=1)
    point = ci[ci["model"] == "a"].set_index("metric")["point"]
    assert point["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert point["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert point["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert point["ece"] == pytest.approx(expected_calibration_error(y, p), abs=1e-12)
    assert point["calibration_in_the_large"] == pytest.approx(p.mean() - y.mean(), abs=1e-12)
    assert ((ci["low"] <= ci["point"]) & (ci["point"] <= ci["high"])).all()
    diff = ci[(ci["model"] == "a - b") & (ci["metric"] == "calibration_in_the_large")].iloc[0]
    assert diff["point"] == pytest.approx(-0.02, abs=1e-3) and diff["high"] < 0


def test_markdown_renders_the_card_subset_and_never_runs_html():
    from leadscore.presentation.html import markdown

    text = "# Title\n\nSome `code` and **bold** <b>.\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | x \\| y |\n"
    page = str(markdown(text))
    assert "<h2>Title</h2>" in page
    assert "<code>code</code>" in page and "<strong>bold</strong>" in page and "&lt;b&gt;" in page
    assert "<li>one</li>" in page and "<li>two</li>" in page
    assert "<th>a</th>" in page and "<td>x | y</td>" in page
    assert '<div class="table-wrap"><table>' in page  # wide tables scroll inside the page


def test_report_without_dates_skips_the_backtest_and_says_why(tmp_path):
    from leadscore.features.config import DataConfig
    from leadscore.presentation.model_report import write_report
    from leadscore.training.train import train_model

    world = generate_demo_world(n_leads=3000, seed=2, n_fresh=0)
    leads = world.leads.drop(columns=["created_at"])
    leads["converted"] = world.outcomes["converted_at"].notna().astype(int).to_numpy()
    result = train_model(leads, None, None, TrainConfig(seed=2, data=DataConfig(label="converted")))
    files = write_report(result, tmp_path, learning_curve=False)
    assert "report_backtest" not in files and "plots_backtest" not in files
    card = files["report_model_card"].read_text(encoding="utf-8")
    assert "Not run (needs creation dates" in card and "The split was random, not by time" in card
    page = files["report_html"].read_text(encoding="utf-8")
    assert page.count(PNG_TAG) == sum(1 for p in files.values() if p.suffix == ".png")


def test_side_by_side_fits_equal_one_after_the_other(trained):
    """The learning curve and the backtest fit two at a time on one thread each when two CPUs are available: the
    same numbers as fitting them one by one on one thread, and one thread fits what two fit."""
    from leadscore.runtime import set_threads
    from leadscore.training.backtest import learning_curve, rolling_backtest, run_trees
    from leadscore.training.crossfit import parallel_fits

    result = trained
    runs = {}
    try:
        for n in (1, 2):
            set_threads(n)
            runs[n] = (learning_curve(result), rolling_backtest(result.frame, result.config, max_folds=3,
                                                                 trees=run_trees(result)),
                       parallel_fits([lambda t: ("a", t), lambda t: ("b", t)]))
    finally:
        set_threads(None)
    (curve1, folds1, order1), (curve2, folds2, order2) = runs[1], runs[2]
    assert order1 == [("a", 1), ("b", 1)] and order2 == [("a", 1), ("b", 1)]  # in order, one thread per fit
    assert len(curve1) >= 3 and len(folds1) >= 2
    pd.testing.assert_frame_equal(curve1, curve2, check_exact=True)
    pd.testing.assert_frame_equal(folds1, folds2, check_exact=True)
    # And one LightGBM thread fits the trees two threads fit (deterministic LightGBM).
    from leadscore.training.crossfit import fit_lightgbm_rounds

    params, n_trees = run_trees(result)
    cats = list(result.frame.spec.categorical_columns)
    X, y = result.frame.X, result.frame.y
    one, two = (fit_lightgbm_rounds(X, y, {**params, "num_threads": t}, cats, n_trees) for t in (1, 2))
    assert np.array_equal(one.predict(X, raw_score=True), two.predict(X, raw_score=True))


@pytest.mark.slow  # draws every figure twice
def test_figures_drawn_by_a_separate_process_are_the_ones_drawn_here(report, tmp_path, caplog):
    """A training run has its report's figures drawn by another process while it logs to MLflow: the same PNG
    bytes and the same page as drawing them here. A worker that fails costs nothing but a warning naming its
    error: the figures are then drawn here."""
    import logging
    import os
    import subprocess
    import sys
    import time

    from leadscore.presentation.model_report import FigureJob, PendingReport, start_report

    result, here = report
    pending = start_report(result, tmp_path / "apart", version="7", draw_apart=True)
    assert pending.job is not None and pending.job.process.pid != os.getpid()
    payload = pending.job.payload
    apart = pending.finish()
    assert not payload.exists()  # the pickled figure data is removed once read
    assert list(apart) == list(here)
    for key, path in here.items():
        if path.suffix == ".png":
            assert apart[key].read_bytes() == path.read_bytes(), key
    assert apart["report_html"].read_text(encoding="utf-8") == here["report_html"].read_text(encoding="utf-8")

    failing = subprocess.Popen([sys.executable, "-c", "import sys; sys.stderr.write('no fonts here\\n'); sys.exit(1)"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stale = tmp_path / "payload.pickle"
    stale.write_bytes(b"")
    (tmp_path / "fallback").mkdir()
    fallback = PendingReport(result, pending.data, pending.parts, tmp_path / "fallback", pending.card,
                             pending.title, {}, FigureJob(failing, stale), time.perf_counter())
    with caplog.at_level(logging.WARNING, logger="leadscore.presentation.model_report"):
        drawn = fallback.finish()
    assert "the figure process failed (no fonts here)" in caplog.text
    assert not stale.exists()
    for key, path in here.items():
        if path.suffix == ".png":
            assert drawn[key].read_bytes() == path.read_bytes(), key


def test_roc_pr_figure_from_points_computed_elsewhere_needs_no_scikit_learn(tmp_path):
    """The figure process draws the ROC / PR figure from points the training run computed: the same PNG as
    computing them there, and scikit-learn (seconds to import) is never loaded for it."""
    import pickle
    import subprocess
    import sys

    from leadscore.presentation.figures import png
    from leadscore.presentation.training_plots import roc_pr_figure, roc_pr_points

    rng = np.random.default_rng(5)
    p = rng.random(600)
    y = (rng.random(600) < p).astype(int)
    curves = {"model": p, "baseline": np.clip(p + rng.normal(0, 0.2, 600), 0, 1)}
    points = roc_pr_points(y, curves)
    assert png(roc_pr_figure(y, curves, points)) == png(roc_pr_figure(y, curves))
    source = tmp_path / "points.pickle"
    source.write_bytes(pickle.dumps((y, curves, points)))
    code = ("import pickle, sys\n"
            "from leadscore.presentation.figures import png\n"
            "from leadscore.presentation.training_plots import roc_pr_figure\n"
            f"y, curves, points = pickle.loads(open({str(source)!r}, 'rb').read())\n"
            "sys.stdout.buffer.write(png(roc_pr_figure(y, curves, points)))\n"
            "sys.stderr.write(str('sklearn' in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert proc.stdout == png(roc_pr_figure(y, curves, points))
    assert proc.stderr.decode().strip() == "False"


def test_a_logistic_run_gets_the_whole_report_with_its_own_model_fitted_again(tmp_path):
    """The learning curve and the backtest fit the run's learner: a logistic model (here with spline terms) is
    fitted again at its L2 strength, not a LightGBM the run never chose (the report used to stop on it)."""
    import dataclasses

    from leadscore.presentation.model_report import write_report
    from leadscore.training.train import train_model

    world = generate_demo_world(n_leads=4000, seed=2)
    config = TrainConfig(seed=2)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, candidates=("logistic_splines",)))
    result = train_model(world.leads, world.outcomes, world.events, config)
    assert result.bundle.model.kind == "logistic" and result.bundle.booster is None
    files = write_report(result, tmp_path)
    curve = pd.read_csv(files["report_learning_curve"]).sort_values("fraction")
    folds = pd.read_csv(files["report_backtest"])
    assert len(curve) >= 3 and curve["n_trees"].isna().all() and curve["roc_auc"].iloc[-1] > 0.8
    assert len(folds) >= 2 and folds["n_trees"].isna().all() and (folds["roc_auc"] > 0.75).all()
    card = files["report_model_card"].read_text(encoding="utf-8")
    assert "fits the run's own logistic model (its L2 strength and terms)" in card
    assert "fixed tree count" not in card
