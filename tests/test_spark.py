"""The Spark engine on local[2]: the same features, probabilities, reasons and rejects as the DuckDB engine."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from leadscore.features.io import read_table
from leadscore.serve.predictor import Predictor

pytestmark = pytest.mark.slow
pyspark = pytest.importorskip("pyspark", reason="the spark extra is not installed")
if shutil.which("java") is None:
    pytest.skip("no Java runtime for Spark", allow_module_level=True)

URI = "models:/lead-conversion@champion"
AS_OF = "2025-10-01T00:00:00+00:00"


@pytest.fixture(scope="module")
def spark():
    from leadscore.serve.spark import local_session

    session = local_session("local[2]", {"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def files(small_world, tmp_path_factory):
    """A lead list with a duplicate id, an unreadable number, an as_of before creation and a row with an extra
    field, and its events as CSV."""
    root = tmp_path_factory.mktemp("spark")
    leads = small_world.fresh_leads.drop(columns=["as_of"]).head(300).copy()
    events = small_world.fresh_events[small_world.fresh_events["lead_id"].isin(leads["lead_id"])]
    leads.to_csv(root / "leads.csv", index=False)
    lines = (root / "leads.csv").read_text().splitlines()
    lines.append(lines[5])  # the lead of line 5 again: a duplicate id
    cells = lines[7].split(",")
    cells[4] = "lots"  # employees: not a number, most are -> missing and counted
    lines[7] = ",".join(cells)
    lines.append(lines[9] + ",surplus")  # one field more than the header
    (root / "leads.csv").write_text("\n".join(lines) + "\n")
    events.to_csv(root / "events.csv", index=False)
    return root


@pytest.fixture(scope="module")
def predictor(logged):
    _, run, _ = logged
    return Predictor.load(URI, tracking_uri=run.tracking_uri)


def test_spark_features_equal_duckdb_features(spark, files, predictor):
    from leadscore.features.spark import spark_features

    spec = predictor.spec
    leads = spark.read.csv(str(files / "leads.csv"), header=True)
    events = spark.read.csv(str(files / "events.csv"), header=True)
    built = spark_features(leads, events, spec, as_of=AS_OF)
    got = built.features.toPandas().drop(columns="__rid").drop_duplicates(spec.id_column)
    got = got.sort_values(spec.id_column).reset_index(drop=True)
    ref = predictor.features(read_table(files / "leads.csv"), read_table(files / "events.csv"), as_of=AS_OF)
    want = ref.frame.sort_values(spec.id_column).reset_index(drop=True)
    assert got[spec.id_column].tolist() == want[spec.id_column].tolist()
    assert len(spec.event_feature_names) > 20
    for name in spec.feature_names:
        if name in spec.categorical_vocab:
            assert got[name].fillna("<NA>").tolist() == want[name].fillna("<NA>").astype(str).tolist(), name
        else:
            a, b = got[name].to_numpy(dtype=float), want[name].to_numpy(dtype=float)
            assert (np.isnan(a) == np.isnan(b)).all(), name
            assert np.nanmax(np.abs(a - b), initial=0.0) <= 1e-9, name
    stats = built.stats()
    for key in ("events_used", "leads_with_events", "leads_matched_by_events", "events_after_as_of_ignored"):
        assert stats[key] == ref.stats[key], key


def test_spark_scores_reasons_and_rejects_equal_batch_scoring(spark, files, predictor, logged, tmp_path):
    from leadscore.serve.batch import score_file
    from leadscore.serve.spark import score_spark_files

    _, run, _ = logged
    want = score_file(predictor, files / "leads.csv", tmp_path / "duck.csv", events_path=files / "events.csv",
                      as_of=AS_OF)
    got = score_spark_files(URI, str(files / "leads.csv"), tmp_path / "spark.csv",
                            events_path=str(files / "events.csv"), as_of=AS_OF, tracking_uri=run.tracking_uri,
                            spark=spark)
    assert got.input_rows == want.input_rows == 302
    assert (got.scored_rows, got.rejected_rows) == (want.scored_rows, want.rejected_rows) == (300, 2)
    a = read_table(tmp_path / "spark.csv").sort_values("lead_id").reset_index(drop=True)
    b = read_table(tmp_path / "duck.csv").sort_values("lead_id").reset_index(drop=True)
    assert a.columns.tolist() == b.columns.tolist() and "reason_3" in a.columns
    numbers = [c for c in a.columns if c.endswith("_contribution") or c in ("probability", "base_rate")]
    for c in numbers:
        assert np.abs(a[c].astype(float) - b[c].astype(float)).max() <= 1e-9, c
    text = [c for c in a.columns if c not in numbers and not c.endswith("_value")]
    pd.testing.assert_frame_equal(a[text], b[text])
    ra = read_table(tmp_path / "spark.rejects.csv").sort_values("reject_reason")
    rb = read_table(tmp_path / "duck.rejects.csv").sort_values("reject_reason")
    assert ra["reject_reason"].tolist()[0] == rb["reject_reason"].tolist()[0] == "column 'lead_id': duplicate lead id"
    assert ra["lead_id"].tolist() == rb["lead_id"].tolist()
    # The record with a surplus field: rejected whole by both (Spark keeps its cells as they were read).
    assert ra["reject_reason"].tolist()[1] == "row has more fields than the header's 11"
    assert rb["reject_reason"].tolist()[1].startswith("row has 12 of 11 fields")
    assert got.stats["not_a_number:employees"] == want.stats["not_a_number:employees"] == 1
    assert got.drift["expected_conversions"] == pytest.approx(want.drift["expected_conversions"], abs=1e-9)
    assert got.drift["feature_psi"] == want.drift["feature_psi"]


def test_parquet_leads_with_their_own_as_of(spark, small_world, predictor, logged, tmp_path):
    """Typed Parquet columns (timestamps with a time zone, numbers) score as the DuckDB engine scores them."""
    from leadscore.serve.spark import score_spark

    _, run, _ = logged
    leads = small_world.fresh_leads.head(120).copy()
    leads["created_at"] = pd.to_datetime(leads["created_at"], utc=True, format="mixed")
    leads["as_of"] = pd.to_datetime(leads["as_of"], utc=True, format="mixed")
    leads["employees"] = pd.to_numeric(leads["employees"])
    events = small_world.fresh_events[small_world.fresh_events["lead_id"].isin(leads["lead_id"])]
    leads.to_parquet(tmp_path / "leads.parquet")
    events.to_parquet(tmp_path / "events.parquet")
    scored = score_spark(spark.read.parquet(str(tmp_path / "leads.parquet")),
                         spark.read.parquet(str(tmp_path / "events.parquet")), URI, tracking_uri=run.tracking_uri)
    got = scored.scores.toPandas().sort_values("lead_id").reset_index(drop=True)
    want = predictor.score(pd.read_parquet(tmp_path / "leads.parquet"), pd.read_parquet(tmp_path / "events.parquet"),
                           reasons=False).sort_values("lead_id").reset_index(drop=True)
    assert len(got) == len(want) == 120 and scored.rejects.count() == 0
    assert np.abs(got["probability"].to_numpy() - want["probability"].to_numpy()).max() <= 1e-9
    assert got["band"].tolist() == want["band"].tolist()
    assert (pd.to_datetime(got["as_of"]).dt.tz_localize("UTC") == want["as_of"]).all()


def test_cli_engine_spark_errors_are_one_line(spark, files, logged, tmp_path):
    from typer.testing import CliRunner

    from leadscore.cli import app

    _, run, _ = logged
    (tmp_path / "events.csv").write_text("lead_id,timestamp,event_type\nN0000001,not a time,page_view\n")
    result = CliRunner().invoke(app, ["score", "--model", URI, "--tracking-uri", run.tracking_uri, "--leads",
                                      str(files / "leads.csv"), "--events", str(tmp_path / "events.csv"),
                                      "--out", str(tmp_path / "out.csv"), "--engine", "spark"])
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "cannot parse 'not a time' as a date/time" in errors[0], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.csv").exists()
    # The caller's session is still usable (the CLI stops only a session it started).
    assert spark.range(3).count() == 3
