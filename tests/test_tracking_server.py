"""Integration: the MLflow code against a real team tracking server (`mlflow server` on a PostgreSQL backend).

A private PostgreSQL cluster and an `mlflow server` (proxied artifacts in a temp folder) are started once for
the module. Skips only when PostgreSQL is not installed (.ci/run installs it).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import servers

from leadscore.demo_world import generate_demo_world
from leadscore.features.config import TrainConfig
from leadscore.models.registry import default_tracking_uri, load_bundle, registered_alias, run_summary
from leadscore.serve.predictor import Predictor

pytestmark = [pytest.mark.server, pytest.mark.slow]  # a PostgreSQL cluster and an MLflow server

MODEL = "lead-conversion"


@dataclass(frozen=True)
class Server:
    dsn: str  # libpq DSN of the backend database (for psql)
    url: str  # http://127.0.0.1:PORT
    artifacts: Path  # the server's --artifacts-destination


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("tracking-server")
    try:
        import psycopg2  # noqa: F401  (the server's SQLAlchemy driver)
    except ImportError:
        pytest.fail("psycopg2 is missing: pip install -e '.[dev]' (psycopg2-binary is in the dev extra)")
    with contextlib.ExitStack() as stack:
        try:
            dsn = stack.enter_context(servers.postgres(base))
        except servers.ServerUnavailable as exc:
            pytest.skip(str(exc))
        url = stack.enter_context(servers.mlflow_server(servers.sqlalchemy_uri(dsn), base / "artifacts"))
        yield Server(dsn, url, base / "artifacts")
        _forget_tracking_uri(url)


def _forget_tracking_uri(url: str) -> None:
    """models.registry sets MLflow's process-wide URIs (and their env vars); don't leave a dead server behind."""
    import mlflow

    if mlflow.get_tracking_uri() == url:
        mlflow.set_tracking_uri(None)
    if mlflow.get_registry_uri() == url:
        mlflow.set_registry_uri(None)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        if os.environ.get(var) == url:
            del os.environ[var]


@pytest.fixture(scope="module")
def world():
    return generate_demo_world(n_leads=4000, seed=2, n_fresh=200)


@pytest.fixture(scope="module")
def first(server, world, tmp_path_factory):
    from leadscore.pipeline import train_and_log

    workdir = tmp_path_factory.mktemp("client-1")
    result, run = train_and_log(world.leads, world.outcomes, world.events, TrainConfig(seed=2), workdir=workdir,
                                tracking_uri=server.url)
    return result, run, workdir


@pytest.fixture(scope="module")
def second(server, world, first, tmp_path_factory):
    from leadscore.pipeline import train_and_log

    return train_and_log(world.leads, world.outcomes, world.events, TrainConfig(seed=2),
                         workdir=tmp_path_factory.mktemp("client-2"), tracking_uri=server.url)


def test_first_run_is_champion_with_metrics_and_proxied_artifacts(server, first):
    from mlflow import MlflowClient

    result, run, workdir = first
    assert run.tracking_uri == server.url
    assert (run.registered_model, run.version, run.alias) == (MODEL, "1", "champion")
    assert registered_alias(MODEL, "champion", tracking_uri=server.url) == "1"
    assert registered_alias(MODEL, "challenger", tracking_uri=server.url) is None

    info = run_summary(run.run_id, tracking_uri=server.url)
    assert info["status"] == "FINISHED"
    assert {"plots/reliability.png", "plots/gains_lift.png", "feature_spec.json"} <= set(info["artifacts"])
    assert info["metrics"]["test_model_roc_auc"] == pytest.approx(result.metrics["model"]["roc_auc"])
    assert info["metrics"]["test_baseline_roc_auc"] == pytest.approx(result.metrics["baseline"]["roc_auc"])
    assert info["tags"]["bundle_manifest_sha256"] == run.bundle_sha256

    # Artifacts went through the server's proxy into its destination, not onto the client's disk.
    artifact_uri = MlflowClient(tracking_uri=server.url).get_run(run.run_id).info.artifact_uri
    assert artifact_uri.startswith("mlflow-artifacts:/"), artifact_uri
    run_dir = server.artifacts / run.experiment_id / run.run_id / "artifacts"
    for name in ("plots/reliability.png", "plots/gains_lift.png", "feature_spec.json"):
        assert (run_dir / name).is_file(), name
    assert any(server.artifacts.rglob("MLmodel")), "the logged model is not in the server's artifact store"
    assert any(server.artifacts.rglob("manifest.json")), "the model bundle is not in the server's artifact store"
    assert not (workdir / "mlartifacts").exists()
    assert not (workdir / "mlflow.db").exists()


def test_second_run_is_challenger_and_champion_stays(server, first, second):
    _, run = second
    assert (run.version, run.alias) == ("2", "challenger")
    assert run.run_id != first[1].run_id
    assert registered_alias(MODEL, "champion", tracking_uri=server.url) == "1"
    assert registered_alias(MODEL, "challenger", tracking_uri=server.url) == "2"


def test_champion_from_server_scores_like_the_trained_bundle(server, world, first):
    result, run, _ = first
    predictor = Predictor.load(f"models:/{MODEL}@champion", tracking_uri=server.url)
    assert predictor.bundle.spec.to_json() == result.bundle.spec.to_json()
    scored = predictor.score(world.fresh_leads, world.fresh_events)
    expected = Predictor(result.bundle).score(world.fresh_leads, world.fresh_events)

    assert len(scored) == len(world.fresh_leads) == 200
    assert scored["lead_id"].is_unique
    assert set(scored["lead_id"]) == set(world.fresh_leads["lead_id"])
    got = scored.set_index("lead_id")["probability"]
    want = expected.set_index("lead_id")["probability"].loc[got.index]
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=0, atol=1e-12)


def test_postgres_holds_the_tracking_and_registry_data(server, first, second):
    assert servers.psql(server.dsn, "SELECT count(*) FROM registered_models") == "1"
    assert servers.psql(server.dsn, "SELECT name FROM registered_models") == MODEL
    assert servers.psql(server.dsn, "SELECT count(*) FROM model_versions") == "2"
    aliases = servers.psql(server.dsn, "SELECT alias || '=' || version FROM registered_model_aliases ORDER BY 1")
    assert aliases.split() == ["challenger=2", "champion=1"]
    run_ids = set(servers.psql(server.dsn, "SELECT run_uuid FROM runs").split())
    assert {first[1].run_id, second[1].run_id} <= run_ids


def test_mlflow_tracking_uri_env_names_the_server(server, first, monkeypatch, tmp_path):
    result, _, _ = first
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    assert default_tracking_uri(tmp_path) == server.url
    bundle = load_bundle(f"models:/{MODEL}@champion")  # no tracking_uri: resolved from the environment
    assert bundle.spec.to_json() == result.bundle.spec.to_json()
    assert not (tmp_path / "mlflow.db").exists()
