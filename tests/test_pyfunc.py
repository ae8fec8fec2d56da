"""The registered MLflow model on its own: raw lead records in (events inline), the numbers `leadscore score`
gives out; its code travels with it, so it loads where the project is not installed; `mlflow models serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.models.registry import load_pyfunc
from leadscore.serve.predictor import Predictor
from tests.servers import _stop, _tail, free_port

AS_OF = "2025-10-01T00:00:00+00:00"
URI = "models:/lead-conversion@champion"


def raw_leads(leads: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """A lead list with each lead's events in an `events` column (a list of {"timestamp", "type"})."""
    by_lead = {k: v for k, v in events.groupby("lead_id")}
    frame = pd.DataFrame(json.loads(leads.to_json(orient="records", date_format="iso")))
    frame["events"] = [
        [] if (mine := by_lead.get(i)) is None else
        [{"timestamp": t.isoformat(), "type": k} for t, k in zip(mine["timestamp"], mine["event_type"], strict=True)]
        for i in frame["lead_id"]]
    return frame


@pytest.fixture(scope="module")
def fresh(small_world):
    leads = small_world.fresh_leads.drop(columns=["as_of"]).head(80)
    events = small_world.fresh_events[small_world.fresh_events["lead_id"].isin(leads["lead_id"])]
    return leads, events


@pytest.fixture(scope="module")
def batch(logged, fresh):
    _, run, _ = logged
    leads, events = fresh
    return Predictor.load(URI, tracking_uri=run.tracking_uri).score(leads, events, as_of=AS_OF, reasons=False)


def test_raw_leads_with_inline_events_score_like_leadscore_score(logged, fresh, batch):
    _, run, _ = logged
    model = load_pyfunc(URI, tracking_uri=run.tracking_uri)
    out = model.predict(raw_leads(*fresh), params={"as_of": AS_OF})
    np.testing.assert_allclose(out["probability"].to_numpy(), batch["probability"].to_numpy(), rtol=0, atol=1e-12)
    assert out["band"].tolist() == batch["band"].tolist()


def test_a_request_without_the_id_column_is_refused(logged, fresh):
    _, run, _ = logged
    model = load_pyfunc(URI, tracking_uri=run.tracking_uri)
    with pytest.raises(Exception, match="lead_id"):
        model.predict(raw_leads(*fresh).drop(columns=["lead_id"]), params={"as_of": AS_OF})


def test_model_carries_its_code_and_names_its_requirements(logged):
    _, run, _ = logged
    import mlflow
    from mlflow.artifacts import download_artifacts

    mlflow.set_tracking_uri(run.tracking_uri)
    try:
        local = Path(download_artifacts(artifact_uri=URI))
    finally:
        mlflow.set_tracking_uri(None)
    code = local / "code" / "leadscore"
    for sub in ("features", "models", "serve"):
        assert (code / sub / "__init__.py").exists()
    requirements = (local / "requirements.txt").read_text().split()
    names = {r.split("==")[0] for r in requirements}
    assert {"mlflow", "lightgbm", "pandas", "numpy", "scikit-learn", "duckdb"} <= names
    assert "leadscore" not in names  # the code is in the model, not a package to install


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A fresh virtual environment with this environment's third-party packages but not the project."""
    env = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # A path added by a .pth line is not a site dir: the editable install of the checkout there stays inactive.
    Path(site, "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.slow  # a bare interpreter importing MLflow and the model: half a minute
def test_loads_and_predicts_where_the_project_is_not_installed(logged, fresh, batch, bare_python, tmp_path):
    _, run, _ = logged
    frame = raw_leads(*fresh)
    data = tmp_path / "leads.json"
    frame.to_json(data, orient="records")
    script = f"""
import importlib.util, json, sys
assert importlib.util.find_spec("leadscore") is None, "the project is importable without the model"
import mlflow, pandas as pd
mlflow.set_tracking_uri({run.tracking_uri!r})
model = mlflow.pyfunc.load_model({URI!r})
out = model.predict(pd.read_json({str(data)!r}, orient="records", dtype=False), params={{"as_of": {AS_OF!r}}})
import leadscore
print(json.dumps({{"p": out["probability"].tolist(), "from": leadscore.__file__}}))
"""
    done = subprocess.run([str(bare_python), "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MLFLOW_DISABLE_TELEMETRY": "true"},
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert "/code/leadscore/" in answer["from"]
    np.testing.assert_allclose(answer["p"], batch["probability"].to_numpy(), rtol=0, atol=1e-12)


@pytest.mark.slow  # starts `mlflow models serve`
def test_mlflow_models_serve_answers_raw_leads_like_leadscore_score(logged, fresh, batch, tmp_path):
    _, run, _ = logged
    port = free_port()
    log = tmp_path / "serve.log"
    mlflow_exe = str(Path(sys.executable).with_name("mlflow"))
    # MLflow starts `uvicorn` by name: this environment's bin folder must be on the PATH.
    env = {**os.environ, "MLFLOW_TRACKING_URI": run.tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([mlflow_exe, "models", "serve", "-m", URI, "--env-manager", "local", "-p", str(port),
                                 "--host", "127.0.0.1"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/ping", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, _tail(log)
                time.sleep(0.3)
        records = json.loads(raw_leads(*fresh).to_json(orient="records"))
        body = json.dumps({"dataframe_records": records, "params": {"as_of": AS_OF}}).encode()
        request = urllib.request.Request(url + "/invocations", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        got = pd.DataFrame(answer["predictions"])
        np.testing.assert_allclose(got["probability"], batch["probability"], rtol=0, atol=1e-9)
        bad = json.dumps({"dataframe_records": [{k: v for k, v in r.items() if k != "lead_id"} for r in records[:2]],
                          "params": {"as_of": AS_OF}}).encode()
        request = urllib.request.Request(url + "/invocations", data=bad, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code in (400, 422) and b"lead_id" in refused.value.read()
    finally:
        _stop(proc)
