"""MLflow as a record, on a real SQLite store: a run's input tables with digests, the model card as the registered
version's description, and a comparison run's parameters and link to the model version it compared."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from leadscore.features.spec import LABEL
from leadscore.models.registry import DESCRIPTION_LIMIT, fit_description, table_digest


def _inputs(tracking_uri: str, run_id: str) -> dict[str, tuple]:
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=tracking_uri).get_run(run_id)
    out = {}
    for item in run.inputs.dataset_inputs:
        tags = {t.key: t.value for t in item.tags}
        out[item.dataset.name] = (item.dataset, tags)
    return out


def test_training_run_logs_every_input_table_with_its_digest(logged, small_world):
    result, run, _ = logged
    inputs = _inputs(run.tracking_uri, run.run_id)
    assert {"leads", "outcomes", "events", "features_training", "features_test"} <= set(inputs)
    for name, frame in (("leads", small_world.leads), ("outcomes", small_world.outcomes),
                        ("events", small_world.events)):
        dataset, tags = inputs[name]
        assert dataset.digest == table_digest(frame)
        assert tags["mlflow.data.context"] == "source" and tags["leadscore.rows"] == str(len(frame))
    test_rows = result.frame.frame.loc[result.split.test]
    dataset, tags = inputs["features_test"]
    assert tags["mlflow.data.context"] == "test" and dataset.digest == table_digest(test_rows)
    assert int(inputs["features_training"][1]["leadscore.rows"]) == int(result.split.train.sum())
    assert json.loads(dataset.profile)["num_rows"] == len(test_rows)
    assert LABEL in test_rows.columns
    assert inputs["features_training"][1]["mlflow.data.context"] == "training"


def test_registered_version_carries_the_model_card_as_its_description(logged):
    from mlflow import MlflowClient

    _, run, _ = logged
    client = MlflowClient(tracking_uri=run.tracking_uri, registry_uri=run.tracking_uri)
    description = client.get_model_version(run.registered_model, run.version).description
    card = open(client.download_artifacts(run.run_id, "model_card.md"), encoding="utf-8").read()
    assert description.startswith("# Model card: lead-conversion version 1 (champion)")
    assert len(description) <= DESCRIPTION_LIMIT
    assert description == fit_description(card)
    kept = description.split("\n\n*(Shortened", 1)[0]
    assert card.startswith(kept) and "## Label" in card


def test_digest_sees_every_row_and_column_type():
    rng = np.random.default_rng(0)
    n = 12_000
    frame = pd.DataFrame({"lead_id": [f"L{i}" for i in range(n)], "x": rng.normal(size=n),
                          "ts": pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC")})
    same = frame.copy()
    assert table_digest(frame) == table_digest(same) and len(table_digest(frame)) == 32
    later_time = frame.copy()
    later_time.loc[n - 1, "ts"] = frame["ts"].iloc[0]  # beyond the first 10,000 rows, a timestamp
    assert table_digest(later_time) != table_digest(frame)
    assert table_digest(frame.rename(columns={"x": "y"})) != table_digest(frame)
    assert table_digest(frame.astype({"x": "float32"})) != table_digest(frame)


def test_long_descriptions_are_cut_at_a_section_and_point_to_the_whole_card():
    card = "# Model card\n\n" + "".join(f"## Section {i}\n\n" + "text " * 200 + "\n\n" for i in range(10))
    short = fit_description(card)
    assert len(short) <= DESCRIPTION_LIMIT and "model_card.md" in short
    assert card.startswith(short.split("\n\n*(Shortened", 1)[0])
    assert "## Section 3" in short and "## Section 9" not in short
    assert fit_description("# small card\n") == "# small card\n"


def test_comparison_run_logs_its_parameters_inputs_and_the_model_version_it_compared(logged, small_world, tmp_path):
    from mlflow import MlflowClient

    from leadscore.models.registry import RunInput, log_comparison, run_summary

    _, run, _ = logged
    report = tmp_path / "report.html"
    report.write_text("<html></html>")
    leads = small_world.leads.head(300)
    run_id = log_comparison(tracking_uri=run.tracking_uri, experiment="comparisons", files={"html": report},
                            metrics={"model_roc_auc": 0.8}, run_name="compare-rules",
                            params={"window": "test", "capacity_per_week": None, "rules": "rules/example.yaml"},
                            model_uri="models:/lead-conversion@champion",
                            inputs=[RunInput("leads", leads, "evaluation")])
    info = run_summary(run_id, tracking_uri=run.tracking_uri)
    assert info["params"] == {"window": "test", "rules": "rules/example.yaml"}  # None values are left out
    tags = info["tags"]
    assert tags["leadscore.model_uri"] == "models:/lead-conversion@champion"
    assert (tags["leadscore.model_name"], tags["leadscore.model_version"]) == ("lead-conversion", run.version)
    assert tags["leadscore.model_run_id"] == run.run_id
    client = MlflowClient(tracking_uri=run.tracking_uri, registry_uri=run.tracking_uri)
    assert client.get_model_version("lead-conversion", run.version).tags["leadscore.comparison_run_id"] == run_id
    dataset, input_tags = _inputs(run.tracking_uri, run_id)["leads"]
    assert dataset.digest == table_digest(leads) and input_tags["mlflow.data.context"] == "evaluation"


@pytest.mark.slow  # a run in a child process, its memory sampled
def test_a_handed_over_event_log_is_freed_once_typed_and_still_logged_whole(small_world, tmp_path):
    """`HandedTable`: training lets the raw log go as soon as it is typed (nothing else keeps it), and the run
    logs the same digest, row count and profile as for the frame itself."""
    import gc
    import weakref

    from leadscore.features.config import TrainConfig
    from leadscore.features.io import read_table
    from leadscore.pipeline import train_and_log
    from leadscore.training import train as training
    from leadscore.training.train import HandedTable

    path = tmp_path / "events.csv"
    small_world.events.to_csv(path, index=False)
    raw = read_table(path, what="events")
    digest, rows = table_digest(raw), len(raw)
    alive_when_typed = []
    typed = training.type_events

    def watch(events, spec, *, source):
        out = typed(events, spec, source=source)
        alive_when_typed.append(ref() is not None)
        return out

    handed = HandedTable(raw)
    ref = weakref.ref(raw)
    del raw
    seen = {}
    original_blf = training.build_lead_frame

    def build(*args, **kwargs):
        gc.collect()
        seen["raw alive while features are built"] = ref() is not None
        return original_blf(*args, **kwargs)

    training.type_events, training.build_lead_frame = watch, build
    try:
        result, run = train_and_log(small_world.leads, small_world.outcomes, handed, TrainConfig(seed=3),
                                    workdir=tmp_path / "work", sources={"events": str(path)})
    finally:
        training.type_events, training.build_lead_frame = typed, original_blf
    assert alive_when_typed == [True] and seen == {"raw alive while features are built": False}
    dataset, tags = _inputs(run.tracking_uri, run.run_id)["events"]
    assert dataset.digest == digest and tags["leadscore.rows"] == str(rows)
    assert json.loads(dataset.profile)["num_rows"] == rows
    assert len(handed) == rows
    with pytest.raises(RuntimeError, match="already taken"):
        handed.take()


_PREPARE = """
import json, logging, os, sys
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from leadscore.models import registry
from leadscore.runtime import set_threads
set_threads(2)  # a process that may use one CPU only would not start the other one
uri, kill = sys.argv[1], sys.argv[2] == "kill"
started = registry.prepare_store(uri)
loaded_before = "mlflow" in sys.modules
if kill:
    for process in registry._PREPARING.values():
        process.kill()
mlflow = registry._mlflow(uri)  # waits for the other process (or, when it died, creates the store here)
names = [e.name for e in mlflow.MlflowClient(uri).search_experiments()]
print(json.dumps({"started": started, "loaded_before": loaded_before, "experiments": names,
                  "again": registry.prepare_store(uri), "files": sorted(os.listdir(os.path.dirname(uri[10:])))}))
"""


@pytest.mark.slow  # two fresh interpreters importing MLflow each
@pytest.mark.parametrize("kill", [False, True])
def test_a_new_sqlite_store_is_made_by_another_process_or_here_when_that_one_dies(tmp_path, kill):
    import os
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    done = subprocess.run([sys.executable, "-c", _PREPARE, uri, "kill" if kill else "wait"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["started"] is True and out["loaded_before"] is False
    assert out["experiments"] == ["Default"]
    assert out["again"] is False  # the store exists now: nothing more to prepare
    assert out["files"] == ["mlflow.db"]  # whole, and no partial database left beside it
    assert ("the separate process failed" in done.stderr) is kill


def test_the_store_process_never_replaces_a_store_that_appeared_meanwhile(tmp_path):
    from leadscore.models.registry import create_sqlite_store

    target = tmp_path / "mlflow.db"
    target.write_bytes(b"someone else's store")
    assert create_sqlite_store(target) is False
    assert target.read_bytes() == b"someone else's store"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]
