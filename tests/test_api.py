"""The HTTP API as a CRM calls it: the real `leadscore serve` on 127.0.0.1, driven over HTTP."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from leadscore.serve.predictor import Predictor
from tests.servers import leadscore_server

# A served model trained first, then a real server on 127.0.0.1 per test group: half a minute before the first test.
pytestmark = pytest.mark.slow

KEY = "s3cret-key"
AS_OF = "2025-10-01T00:00:00+00:00"


def call(url: str, path: str, body=None, *, key: str | None = KEY, method: str | None = None,
         raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url + path, data=data, method=method or ("POST" if data is not None else "GET"))
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        text = exc.read()
        return exc.code, json.loads(text) if text.startswith(b"{") else {"text": text.decode()}


def records(leads: pd.DataFrame, events: pd.DataFrame) -> list[dict]:
    """Leads as an API client sends them: attributes as JSON values, events inline."""
    by_lead = {k: v for k, v in events.groupby("lead_id")}
    out = []
    for row in json.loads(leads.to_json(orient="records", date_format="iso")):
        mine = by_lead.get(row["lead_id"])
        row["events"] = [] if mine is None else [
            {"timestamp": t.isoformat(), "type": k} for t, k in zip(mine["timestamp"], mine["event_type"], strict=True)]
        out.append(row)
    return out


@pytest.fixture(scope="module")
def server(logged, tmp_path_factory):
    _, run, _ = logged
    log = tmp_path_factory.mktemp("api") / "serve.log"
    with leadscore_server("models:/lead-conversion@champion", "--tracking-uri", run.tracking_uri,
                          "--api-key-env", "LEADSCORE_TEST_KEY", "--max-body-mb", "0.5", "--watch", "0.5",
                          env={"LEADSCORE_TEST_KEY": KEY}, log_path=log) as url:
        yield url, run


@pytest.fixture(scope="module")
def fresh(small_world):
    leads = small_world.fresh_leads.drop(columns=["as_of"]).head(120)
    events = small_world.fresh_events[small_world.fresh_events["lead_id"].isin(leads["lead_id"])]
    return leads, events


def test_score_equals_batch_scoring_of_the_same_leads(server, fresh):
    url, run = server
    leads, events = fresh
    status, body = call(url, "/score", {"leads": records(leads, events), "as_of": AS_OF})
    assert status == 200, body
    batch = Predictor.load("models:/lead-conversion@champion", tracking_uri=run.tracking_uri).score(
        leads, events, as_of=AS_OF)
    got = pd.DataFrame(body["leads"])
    assert got["lead_id"].tolist() == batch["lead_id"].tolist()
    np.testing.assert_allclose(got["probability"], batch["probability"], rtol=0, atol=1e-12)
    assert got["score"].tolist() == batch["score"].tolist() and got["band"].tolist() == batch["band"].tolist()
    np.testing.assert_allclose(got["base_rate"], batch["base_rate"], rtol=0, atol=1e-12)
    for j in range(3):
        assert [r[j]["text"] for r in got["reasons"]] == batch[f"reason_{j + 1}"].tolist()
    assert body["model"]["version"] == "1" and body["model"]["alias"] == "champion"


def test_one_lead_without_the_wrapper_and_without_reasons(server, fresh):
    url, _ = server
    leads, events = fresh
    one = records(leads.head(1), events)[0]
    status, body = call(url, "/score", {**one, "as_of": AS_OF})
    assert status == 200, body
    assert len(body["leads"]) == 1 and 0 < body["leads"][0]["probability"] < 1 and body["leads"][0]["reasons"]
    status, body = call(url, "/score", {"leads": [one], "as_of": AS_OF, "reasons": False})
    assert status == 200 and "reasons" not in body["leads"][0]


@pytest.mark.parametrize(("change", "loc", "words"), [
    ({"lead_id": None}, ["body", "leads", 1, "lead_id"], "missing lead id"),
    ({"employees": "lots"}, ["body", "leads", 1, "employees"], "expected a number"),
    ({"as_of": "2020-01-01"}, ["body", "leads", 1, "as_of"], "before the lead's creation"),
    ({"created_at": "sometime"}, ["body", "leads", 1, "created_at"], "cannot parse"),
    ({"events": [{"timestamp": "soon", "type": "email_open"}]}, ["body", "leads", 1, "events[0].timestamp"],
     "cannot parse"),
])
def test_invalid_lead_is_a_422_naming_the_lead_and_field(server, fresh, change, loc, words):
    url, _ = server
    leads, events = fresh
    body = records(leads.head(3), events)
    body[1] = {**body[1], **change}
    status, answer = call(url, "/score", {"leads": body, "as_of": AS_OF})
    assert status == 422, answer
    (detail,) = answer["detail"]
    assert detail["loc"] == loc and words in detail["msg"]


def test_schema_errors_are_422_too(server):
    url, _ = server
    status, answer = call(url, "/score", {"leads": [{"lead_id": "x", "events": [{"type": "email_open"}]}]})
    assert status == 422
    assert any("timestamp" in d["loc"] for d in answer["detail"])
    status, _ = call(url, "/score", raw=b"{not json")
    assert status == 422


def test_api_key_body_limit_health_model_and_docs(server):
    url, _ = server
    assert call(url, "/score", {"leads": [{"lead_id": "x"}]}, key=None)[0] == 401
    assert call(url, "/score", {"leads": [{"lead_id": "x"}]}, key="wrong")[0] == 401
    assert call(url, "/health", key=None)[0] == 200
    status, answer = call(url, "/score", raw=b'{"leads": [' + b'{"lead_id": "x"},' * 40_000 + b'{"lead_id": "y"}]}')
    assert status == 413 and "larger than 500,000 bytes" in answer["detail"]
    status, info = call(url, "/model")
    assert status == 200
    assert info["schema"]["id_column"] == "lead_id" and "industry" in info["schema"]["categorical_columns"]
    assert info["metrics"]["test"]["roc_auc"] > 0.6 and info["training_window"]["split"] == "time"
    with urllib.request.urlopen(url + "/openapi.json", timeout=10) as response:
        spec = json.loads(response.read())
    assert {"/score", "/model", "/health", "/reload"} <= set(spec["paths"])
    with urllib.request.urlopen(url + "/docs", timeout=10) as response:
        assert response.status == 200


def test_new_champion_is_picked_up_by_reload_and_by_the_alias_watch(server, fresh, monkeypatch):
    from mlflow import MlflowClient

    url, run = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run.tracking_uri)  # the logged model is resolved in this store
    client = MlflowClient(tracking_uri=run.tracking_uri, registry_uri=run.tracking_uri)
    first = client.get_model_version("lead-conversion", "1")
    second = client.create_model_version("lead-conversion", first.source, run_id=first.run_id)
    try:
        client.set_registered_model_alias("lead-conversion", "champion", second.version)
        deadline = time.monotonic() + 20
        while call(url, "/health")[1]["model"]["version"] != str(second.version):  # the watch (every 0.5 s)
            assert time.monotonic() < deadline, "the alias watch did not pick up the new champion"
            time.sleep(0.2)
        client.set_registered_model_alias("lead-conversion", "champion", "1")
        status, answer = call(url, "/reload", method="POST", raw=b"")
        assert status == 200 and answer["model"]["version"] == "1"
    finally:
        client.set_registered_model_alias("lead-conversion", "champion", "1")
        client.delete_model_version("lead-conversion", second.version)


def test_leads_without_their_events_are_flagged_like_a_batch_run(server, fresh):
    url, _ = server
    leads, events = fresh
    status, body = call(url, "/score", {"leads": records(leads.head(40), events), "as_of": AS_OF})
    assert status == 200 and not any("event rows" in w for w in body["warnings"])
    bare = [{**r, "events": []} for r in records(leads.head(40), events)]
    status, body = call(url, "/score", {"leads": bare, "as_of": AS_OF})
    assert status == 200 and any("have event rows, against" in w for w in body["warnings"]), body["warnings"]


def test_drift_over_the_latest_scored_leads(server, fresh):
    url, _ = server
    leads, events = fresh
    assert call(url, "/score", {"leads": records(leads, events), "as_of": AS_OF})[0] == 200
    status, drift = call(url, "/drift")
    assert status == 200, drift
    assert drift["n"] >= len(leads) and "lead_source" in drift["feature_psi"]
    assert 0 < drift["expected_conversion_rate"] < 1 and drift["expected_roc_auc"] > 0.5
