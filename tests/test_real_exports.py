"""Real exports, first time: any two-valued outcome, one typing from training to scoring, and the property that a
training file's own rows score with no rejects and the evaluation's probabilities."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.features.config import TrainConfig, load_config
from leadscore.features.spec import AS_OF
from leadscore.serve.predictor import Predictor
from leadscore.training.train import train_model
from tests.conftest import shared_data

REPO = Path(__file__).resolve().parents[1]


def leadscore(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leadscore", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def _deals(n: int = 1500, seed: int = 0, stages=("Won", "Lost")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    size = rng.integers(1, 500, n)
    source = rng.choice(["web", "referral", "event", "list"], n)
    logit = -0.8 + 0.004 * size + np.where(source == "referral", 1.0, 0.0)
    won = rng.random(n) < 1 / (1 + np.exp(-logit))
    stage = np.where(won, stages[0], stages[1])
    if len(stages) > 2:
        stage = np.where(rng.random(n) < 0.1, stages[2], stage)
    housing = rng.choice(["yes", "no", "unknown"], n, p=[0.55, 0.42, 0.03])
    return pd.DataFrame({"deal_id": [f"D{i:05d}" for i in range(n)], "company_size": size, "source": source,
                         "housing": housing, "deal_stage": stage})


def test_won_lost_trains_with_no_option_and_the_mapping_is_printed_and_saved(tmp_path):
    path = tmp_path / "deals.csv"
    _deals().to_csv(path, index=False)
    proc = leadscore("train", "--leads", path, "--label", "deal_stage", "--id", "deal_id", "--workdir", tmp_path,
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Plain output prints the mapping with counts, and the candidates' cross-validated scores.
    frame = pd.read_csv(path)
    won, lost = int((frame["deal_stage"] == "Won").sum()), int((frame["deal_stage"] == "Lost").sum())
    assert f"label deal_stage: 'Won' = converted ({won:,}), 'Lost' = not converted ({lost:,})" in proc.stdout
    assert "CV log loss" in proc.stdout
    (card,) = list((tmp_path / "reports").glob("*/model_card.md"))
    assert "Outcome mapping: label deal_stage: 'Won' = converted" in card.read_text()
    # The registered bundle carries the mapping (compare/promote label new outcomes the same way).
    predictor = Predictor.load("models:/lead-conversion@champion", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    saved = predictor.bundle.meta["label"]
    assert saved["positive"] == ["Won"] and saved["negative"] == ["Lost"] and saved["counts"]["Won"] == won


@pytest.mark.slow
def test_three_valued_label_needs_positive_and_open_values_are_left_out(tmp_path):
    path = tmp_path / "deals.csv"
    _deals(stages=("Closed", "Dropped", "In progress")).to_csv(path, index=False)
    proc = leadscore("train", "--leads", path, "--label", "deal_stage", "--id", "deal_id", "--workdir",
                     tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("> ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "cannot tell which label value means converted (it has more than two values" in lines[0]
    assert "'In progress' (" in lines[0] and "--positive VALUE" in lines[0]
    proc = leadscore("train", "--leads", path, "--label", "deal_stage", "--id", "deal_id", "--positive", "closed",
                     "--open", "In progress", "--workdir", tmp_path / "w", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    frame = pd.read_csv(path)
    assert summary["data"]["open_outcome"] == int((frame["deal_stage"] == "In progress").sum())
    assert summary["data"]["labelled"] == len(frame) - summary["data"]["open_outcome"]
    assert summary["label_mapping"]["open"] == ["In progress"]


def test_check_data_takes_positive_too(tmp_path):
    path = tmp_path / "deals.csv"
    _deals(stages=("Closed", "Dropped")).to_csv(path, index=False)
    proc = leadscore("check-data", "--leads", path, "--label", "deal_stage", "--id", "deal_id", "--positive",
                     "Closed", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "label deal_stage: 'Closed' = converted" in proc.stdout


def test_yes_no_unknown_is_a_category_and_scores_without_rejects(tmp_path):
    frame = _deals(3000, seed=4)
    cfg = TrainConfig()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, lead_id="deal_id", label="deal_stage"))
    result = train_model(frame, None, None, cfg)
    assert "housing" in result.bundle.spec.categorical_vocab
    assert "unknown" in result.bundle.spec.categorical_vocab["housing"]
    # A number column with an odd unreadable cell: missing at training and at scoring, counted, never a reject.
    fresh = _deals(500, seed=5).drop(columns=["deal_stage"])
    fresh["company_size"] = fresh["company_size"].astype(object)
    fresh.loc[:9, "company_size"] = "n/a"
    scored = Predictor(result.bundle).score_detailed(fresh)
    assert len(scored.rejects) == 0 and len(scored.scores) == 500
    assert scored.stats["not_a_number:company_size"] == 10


def _score_own_rows(result, leads: pd.DataFrame, events: pd.DataFrame | None, tmp_path: Path) -> None:
    """Score a training table's own rows through a saved and reloaded model; compare with the evaluation."""
    result.bundle.save(tmp_path / "bundle")
    predictor = Predictor.load(tmp_path / "bundle")
    spec = result.bundle.spec
    rows = leads.drop(columns=[c for c in (result.config.data.label,) if c and c in leads.columns])
    as_of = "created" if spec.created_column in rows.columns and result.frame.as_of.notna().all() else None
    scored = predictor.score_detailed(rows, events, as_of, reasons=True)
    assert len(scored.rejects) == 0, scored.rejects.head()
    assert len(scored.scores) == len(leads)
    got = pd.Series(scored.scores["probability"].to_numpy(), index=scored.scores[spec.id_column].to_numpy())
    # The evaluation path on every labelled lead (test slice included) gives the same probabilities.
    evaluated = predictor.scorer.score_frame(result.frame, reasons=False)
    expected = pd.Series(evaluated["probability"].to_numpy(), index=result.frame.ids.to_numpy())
    np.testing.assert_allclose(got.reindex(expected.index).to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)
    test = pd.Series(result.test_scores["probability"].to_numpy(), index=result.test_frame.ids.to_numpy())
    np.testing.assert_allclose(got.reindex(test.index).to_numpy(), test.to_numpy(), rtol=0, atol=1e-12)


def _awkward(n: int, seed: int) -> pd.DataFrame:
    """Generated export with awkward columns: mixed tokens, mostly missing, near-constant, high-cardinality text."""
    rng = np.random.default_rng(seed)
    score = rng.normal(size=n)
    mixed = np.round(rng.gamma(2, 10, n), 1).astype(str).astype(object)
    mixed[rng.random(n) < 0.03] = "unknown"
    mixed[rng.random(n) < 0.01] = "-"
    mostly_missing = np.where(rng.random(n) < 0.95, "", rng.choice(["x", "y"], n))
    near_constant = np.where(rng.random(n) < 0.995, "A", "B")
    city = np.array([f"city {int(v)}" for v in rng.zipf(1.6, n) % 3000])
    yes_no = rng.choice(["Yes", "No", "n/a"], n, p=[0.5, 0.46, 0.04])
    logit = -1.0 + 1.2 * score + np.where(yes_no == "Yes", 0.6, 0.0)
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame({"key": [f"K-{i}" for i in range(n)], "score": np.round(score, 3), "mixed": mixed,
                         "mostly_missing": mostly_missing, "near_constant": near_constant, "city": city,
                         "subscribed": yes_no, "result": np.where(y, "converted", "not converted")})


def test_property_generated_awkward_frames(tmp_path):
    for seed in (0, 1):
        leads = _awkward(2500, seed)
        cfg = TrainConfig(seed=seed)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, lead_id="key", label="result"))
        result = train_model(leads, None, None, cfg)
        _score_own_rows(result, leads, None, tmp_path / str(seed))


def test_property_demo_world(small_world, trained, tmp_path):
    _score_own_rows(trained, small_world.leads, small_world.events, tmp_path)


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("config", ["x_education.yaml", "olist.yaml"])
def test_property_real_data(config, tmp_path):
    shared_data("x_education_leads.csv" if config.startswith("x_") else "olist")
    from leadscore.pipeline import load_inputs

    dataset, cfg = load_inputs(load_config(REPO / "configs" / config))
    result = train_model(dataset.leads, dataset.outcomes, dataset.events, cfg, sources=dataset.sources)
    _score_own_rows(result, dataset.leads, dataset.events, tmp_path)


@pytest.mark.slow
def test_property_leadforge(tmp_path):
    import shutil

    exe = shutil.which("leadforge") or str(Path(sys.executable).with_name("leadforge"))
    if not Path(exe).exists():
        pytest.skip("the leadforge package is not installed")
    subprocess.run([exe, "generate", "--recipe", "b2b_saas_procurement_v1", "--seed", "3", "--mode",
                    "student_public", "--n-leads", "2500", "--out", str(tmp_path / "leadforge-bundle")],
                   check=True, capture_output=True)
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "leadforge.yaml", tmp_path / "configs" / "leadforge.yaml")
    from leadscore.pipeline import load_inputs

    dataset, cfg = load_inputs(load_config(tmp_path / "configs" / "leadforge.yaml"))
    result = train_model(dataset.leads, dataset.outcomes, dataset.events, cfg, sources=dataset.sources)
    _score_own_rows(result, dataset.leads, dataset.events, tmp_path / "score")
    assert AS_OF in result.frame.frame.columns
