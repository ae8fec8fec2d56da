"""Shared fixtures: a small seeded demo world, a model trained on it, and an MLflow store in a temp folder."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from leadscore.demo_world import DemoWorld, generate_demo_world
from leadscore.features.config import TrainConfig

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _no_ambient_tracking_uri(monkeypatch):
    """Tests never write to a tracking store named by the developer's environment."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session")
def small_world() -> DemoWorld:
    return generate_demo_world(n_leads=6_000, seed=3, n_fresh=400)


@pytest.fixture(scope="session")
def trained(small_world):
    """A model trained in memory on the small world (no MLflow)."""
    from leadscore.training.train import train_model

    truth = small_world.truth.set_index("lead_id")["true_probability"]
    return train_model(small_world.leads, small_world.outcomes, small_world.events, TrainConfig(seed=3),
                       truth=truth)


@pytest.fixture(scope="session")
def demo_trained():
    """The default demo world (20k leads, seed 0) trained in memory: what `leadscore demo` measures."""
    from leadscore.training.train import train_model

    world = generate_demo_world()
    truth = world.truth.set_index("lead_id")["true_probability"]
    return world, train_model(world.leads, world.outcomes, world.events, TrainConfig(seed=0), truth=truth)


@pytest.fixture(scope="session")
def logged(small_world, tmp_path_factory):
    """The small world trained and logged to a fresh SQLite MLflow store; returns (result, run, workdir)."""
    from leadscore.pipeline import train_and_log

    workdir = tmp_path_factory.mktemp("mlflow-store")
    truth = small_world.truth.set_index("lead_id")["true_probability"]
    result, run = train_and_log(small_world.leads, small_world.outcomes, small_world.events, TrainConfig(seed=3),
                                workdir=workdir, truth=truth)
    return result, run, workdir


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (real data lives in ../shared/data beside the checkout)")
    return path


os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
