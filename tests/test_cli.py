"""The `leadscore` command as users run it: the demo, training and scoring, and one-line errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from leadscore.features.io import read_table


def leadscore(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env_cmd = [sys.executable, "-m", "leadscore", *map(str, args)]
    return subprocess.run(env_cmd, capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    proc = leadscore("demo", "--workdir", workdir, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), workdir


def test_demo_meets_the_acceptance_bar(demo_run):
    summary, workdir = demo_run
    model, baseline = summary["metrics"]["model"], summary["metrics"]["baseline"]
    assert model["ece"] <= 0.02
    assert model["roc_auc"] >= baseline["roc_auc"]
    assert model["mae_vs_truth"] < baseline["mae_vs_truth"]
    assert summary["data"]["leads"] == 20_000
    assert summary["data"]["immature"] > 0 and summary["data"]["converted_before_as_of"] > 0
    assert summary["seconds"] < 180


def test_demo_writes_one_scored_row_per_fresh_lead(demo_run):
    summary, workdir = demo_run
    fresh = read_table(workdir / "data" / "fresh_leads.csv")
    scored = read_table(summary["scored"]["output"])
    assert sorted(scored["lead_id"]) == sorted(fresh["lead_id"])
    assert {"probability", "score", "band", "reason_1", "reason_2", "reason_3"} <= set(scored.columns)
    assert summary["scored"]["rejected_rows"] == 0
    assert summary["scored"]["mae_vs_truth"] < 0.06


def test_demo_registers_champion_in_the_sqlite_store(demo_run):
    from leadscore.models.registry import registered_alias, run_summary

    summary, workdir = demo_run
    mlf = summary["mlflow"]
    assert mlf["tracking_uri"] == f"sqlite:///{(workdir / 'mlflow.db').resolve()}"
    assert mlf["registry_uri"] == "models:/lead-conversion@champion"
    assert registered_alias("lead-conversion", "champion", tracking_uri=mlf["tracking_uri"]) == mlf["version"]
    run = run_summary(mlf["run_id"], tracking_uri=mlf["tracking_uri"])
    assert {"plots/reliability.png", "plots/gains_lift.png"} <= set(run["artifacts"])
    assert run["metrics"]["test_model_ece"] == pytest.approx(summary["metrics"]["model"]["ece"])


@pytest.mark.slow
def test_demo_human_output_and_rerun_in_the_same_workdir(demo_run, tmp_path):
    import shutil

    summary, original = demo_run
    workdir = tmp_path / "again"  # a copy, so the other tests keep the original demo files
    shutil.copytree(original, workdir)
    proc = leadscore("demo", "--workdir", workdir, "--n-leads", "3000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ROC AUC" in proc.stdout and "Scored file" in proc.stdout
    assert "challenger" not in proc.stdout or "version 2" in proc.stdout


def test_score_command_keeps_every_row(demo_run, tmp_path):
    summary, workdir = demo_run
    fresh = read_table(workdir / "data" / "fresh_leads.csv").head(300)
    fresh.loc[5, "lead_id"] = None
    fresh.loc[7, "employees"] = "many"
    fresh.loc[9, "lead_id"] = fresh.loc[8, "lead_id"]
    fresh = fresh.drop(columns=["country"])  # an optional feature column missing: treated as missing
    leads = tmp_path / "list.csv"
    fresh.to_csv(leads, index=False, sep=";")
    out = tmp_path / "scored.parquet"
    proc = leadscore("score", "--model", "models:/lead-conversion@champion", "--leads", leads,
                     "--events", workdir / "data" / "fresh_events.csv", "--out", out,
                     "--tracking-uri", summary["mlflow"]["tracking_uri"], "--keep", "company", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    scored = pd.read_parquet(out)
    rejects = pd.read_parquet(result["rejects"])
    assert len(scored) + len(rejects) == 300
    assert sorted(rejects["input_row"]) == [6, 10]  # row 8's unreadable employees is missing, not a reject
    assert set(rejects["reject_reason"]) == {"column 'lead_id': missing lead id",
                                             "column 'lead_id': duplicate lead id"}
    assert result["stats"]["not_a_number:employees"] == 1
    assert "company" in scored.columns
    assert result["stats"]["missing_column:country"] == 299  # every row typed (the duplicate was set aside first)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


LEADS = "lead_id,created_at,industry\n1,2025-01-01,a\n2,2025-01-02,b\n"
OUTCOMES = "lead_id,converted_at\n1,2025-01-20\n"


@pytest.mark.parametrize("leads, outcomes, extra, expected", [
    ("id,created_at\n1,2025-01-01\n", OUTCOMES, [], "leads.csv: missing required id column 'lead_id'"),
    ("lead_id,industry\n1,a\n", OUTCOMES, [], "leads.csv: missing required column 'created_at'"),
    ("", OUTCOMES, [], "leads.csv: leads file is empty"),
    ("lead_id,created_at\n", OUTCOMES, [], "leads.csv: leads file has a header but no rows"),
    ("lead_id,created_at\n1,2025-01-01\n2,not a date\n", OUTCOMES, [],
     "leads.csv: column 'created_at': cannot parse 'not a date' as a date/time (row 2)"),
    (LEADS, "lead_id,converted_at\n1,soon\n", [], "outcomes.csv: column 'converted_at': cannot parse 'soon'"),
    (LEADS, "lead_id,when\n1,2025-01-20\n", [], "outcomes.csv: missing required outcome column 'converted_at'"),
    (LEADS, "lead_id,converted_at\n", [], "outcomes.csv: outcomes file has a header but no rows"),
    (LEADS, "lead_id,converted_at\n3,2025-01-20\n", ["--data-end", "2025-12-31"],
     "leads.csv: label has a single class: all 2 labelled leads are not converted"),
    ("lead_id,created_at,won\n1,2025-01-01,1\n2,2025-01-02,2\n3,2025-01-03,3\n", None, ["--label", "won"],
     "leads.csv: column 'won': cannot tell which label value means converted (it has more than two values; "
     "values: '1' (1), '2' (1), '3' (1)); name it with --positive VALUE"),
    ("lead_id,created_at,won\n1,2025-01-01,no\n2,2025-01-02,no\n", None, ["--label", "won"],
     "leads.csv: column 'won': cannot tell which label value means converted (it has a single value; "
     "values: 'no' (2))"),
    ("lead_id,created_at\n1,2025-01-01\n", None, ["--label", "won"],
     "leads.csv: missing label column 'won' (and no outcomes table was given)"),
    ("lead_id,created_at\n1,2025-01-01\n2,2025-01-02\n1,2025-01-03\n", OUTCOMES, [],
     "leads.csv: column 'lead_id': duplicate lead id (row 3)"),
    ("lead_id;created_at;revenue\n1;2025-01-01;$1,200.50\n2;2025-01-02;$900.00\n", OUTCOMES, [],
     "leads.csv: column 'revenue': numbers are written with currency or thousands separators (e.g. '$1,200.50')"),
    ("\ufefflead_id,created_at,won\n1,2025-01-01,1\n2,not-a-date,0\n", None, ["--label", "won"],
     "leads.csv: column 'created_at': cannot parse 'not-a-date' as a date/time (row 2)"),
])
def test_train_bad_input_is_one_line_error_and_writes_nothing(tmp_path, leads, outcomes, extra, expected):
    args = ["train", "--leads", _write(tmp_path / "leads.csv", leads), "--workdir", tmp_path / "work", *extra]
    if outcomes is not None:
        args += ["--outcomes", _write(tmp_path / "outcomes.csv", outcomes)]
    proc = leadscore(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    # Progress lines ("> reading ...") may come first; the error itself is exactly one line, the last.
    errors = [ln for ln in lines if not ln.startswith("> ")]
    assert errors == [lines[-1]], proc.stderr
    assert lines[-1].startswith("error: ")
    assert expected in lines[-1]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "mlflow.db").exists()


def test_score_with_missing_model_is_one_line_error(tmp_path):
    leads = _write(tmp_path / "leads.csv", LEADS)
    proc = leadscore("score", "--model", tmp_path / "no-model", "--leads", leads, "--out", tmp_path / "o.csv")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'no-model'}: model path not found"]
    assert not (tmp_path / "o.csv").exists()


def test_score_with_unsupported_output_type_writes_nothing(demo_run, tmp_path):
    summary, workdir = demo_run
    proc = leadscore("score", "--model", "models:/lead-conversion@champion",
                     "--leads", workdir / "data" / "fresh_leads.csv", "--out", tmp_path / "o.json",
                     "--tracking-uri", summary["mlflow"]["tracking_uri"])
    assert proc.returncode == 2
    assert "unsupported file type '.json'" in proc.stderr
    proc = leadscore("score", "--model", "models:/lead-conversion@champion",
                     "--leads", workdir / "data" / "fresh_leads.csv", "--out", tmp_path / "o.xlsx",
                     "--tracking-uri", summary["mlflow"]["tracking_uri"])
    assert proc.returncode == 2
    assert "output must be .csv or .parquet" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_compare_command_beats_the_example_rules_on_the_demo(demo_run, tmp_path):
    from leadscore.models.registry import run_summary

    summary, workdir = demo_run
    data = workdir / "data"
    repo = Path(__file__).resolve().parents[1]
    proc = leadscore("compare", "--model", "models:/lead-conversion@champion",
                     "--rules", repo / "rules" / "example.yaml", "--leads", data / "leads.csv",
                     "--outcomes", data / "outcomes.csv", "--events", data / "events.csv",
                     "--report", tmp_path / "cmp", "--tracking-uri", summary["mlflow"]["tracking_uri"], "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    m = result["metrics"]
    assert m["model"]["roc_auc"] > m["rules"]["roc_auc"]
    assert m["difference"]["roc_auc_ci"][0] > 0  # not just noise
    head = result["headline"]
    assert head["model_conversions"] > head["rules_conversions"]
    assert result["n_leads"] == summary["data"]["test_rows"]  # the model's held-out test window
    html = (tmp_path / "cmp" / "report.html").read_text(encoding="utf-8")
    assert result["headline_text"] in html.replace("&#x27;", "'")
    assert result["scorecard"]["roc_auc"] >= m["rules"]["roc_auc"]
    assert (tmp_path / "cmp" / "scorecard.csv").exists()
    run = run_summary(result["mlflow_run_id"], tracking_uri=summary["mlflow"]["tracking_uri"])
    assert "comparison/report.html" in run["artifacts"]
    # The run records what was compared: its parameters, the model version and the tables it read.
    assert run["params"]["model_uri"] == "models:/lead-conversion@champion" and run["params"]["window"] == "test"
    assert run["params"]["rules"].endswith("example.yaml")
    assert run["tags"]["leadscore.model_version"] == summary["mlflow"]["version"]
    assert run["tags"]["leadscore.model_run_id"] == summary["mlflow"]["run_id"]
    from mlflow import MlflowClient

    inputs = MlflowClient(summary["mlflow"]["tracking_uri"]).get_run(result["mlflow_run_id"]).inputs.dataset_inputs
    assert {i.dataset.name for i in inputs} == {"leads", "outcomes", "events"}
    assert all(i.dataset.source_type == "local" and len(i.dataset.digest) == 32 for i in inputs)


def test_rules_command_scores_and_lists_band_crossings(demo_run, tmp_path):
    summary, workdir = demo_run
    data = workdir / "data"
    repo = Path(__file__).resolve().parents[1]
    leads = read_table(data / "leads.csv").head(2000).drop(columns=["created_at"])
    leads.to_csv(tmp_path / "leads.csv", index=False)
    common = ["rules", "--rules", repo / "rules" / "demo_extended.yaml", "--leads", tmp_path / "leads.csv",
              "--events", data / "events.csv", "--json"]
    first = leadscore(*common, "--out", tmp_path / "week1.csv", "--as-of", "2024-10-01")
    assert first.returncode == 0, first.stderr[-2000:]
    second = leadscore(*common, "--out", tmp_path / "week2.csv", "--as-of", "2024-12-01",
                       "--previous", tmp_path / "week1.csv")
    assert second.returncode == 0, second.stderr[-2000:]
    result = json.loads(second.stdout)
    assert result["leads"] == 2000
    alerts = read_table(result["alerts"])
    assert len(alerts) == result["crossed_up"] > 0
    before = read_table(tmp_path / "week1.csv").set_index("lead_id")["score"].astype(float)
    after = read_table(tmp_path / "week2.csv").set_index("lead_id")["score"].astype(float)
    moved = alerts[alerts["direction"] == "up"]["lead_id"]
    assert (after.loc[moved] > before.loc[moved]).all()


def test_funnel_command_writes_the_report(demo_run, tmp_path):
    summary, workdir = demo_run
    data = workdir / "data"
    proc = leadscore("funnel", "--leads", data / "leads.csv", "--outcomes", data / "outcomes.csv",
                     "--stages", data / "stages.csv", "--pipeline", data / "pipeline.csv",
                     "--revenue-target", "1000000", "--out-dir", tmp_path / "funnel", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    html = [p for p in result["files"].values() if str(p).endswith(".html")]
    assert html and Path(html[0]).stat().st_size > 10_000
    missing = leadscore("funnel", "--leads", data / "leads.csv", "--out-dir", tmp_path / "f2")
    assert missing.returncode == 2 and "give an outcomes file or a stages file" in missing.stderr


@pytest.mark.slow
def test_compare_uses_the_given_team_capacities(demo_run, tmp_path):
    summary, workdir = demo_run
    data = workdir / "data"
    repo = Path(__file__).resolve().parents[1]
    proc = leadscore("compare", "--model", "models:/lead-conversion@champion",
                     "--rules", repo / "rules" / "example.yaml", "--leads", data / "leads.csv",
                     "--outcomes", data / "outcomes.csv", "--events", data / "events.csv",
                     "--capacity-per-week", "50", "--telemarketing-per-week", "100", "--no-log",
                     "--report", tmp_path / "cmp", "--tracking-uri", summary["mlflow"]["tracking_uri"], "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["headline_text"].startswith("With capacity for 50 leads a week, the model finds")
    cut = {row["team"]: row for row in result["cutoffs"]}
    assert cut["sales"]["capacity_per_week"] == 50 and abs(cut["sales"]["leads_per_week"] - 50) < 10
    assert abs(cut["telemarketing"]["leads_per_week"] - 100) < 20
    assert result["mlflow_run_id"] is None


def test_the_command_ends_as_the_interpreter_would_less_the_module_teardown(tmp_path):
    """The entry point skips freeing every module at exit, but keeps what finalisation owes: the exit status,
    output flushed into a pipe, atexit functions (temporary folders, logging) and other threads run to the end."""
    marker = tmp_path / "finalised.txt"
    code = ("import atexit, sys, threading, time\n"
            "from pathlib import Path\n"
            "from leadscore.cli import main\n"
            "marker = Path(sys.argv[1])\n"
            "def late():\n"
            "    time.sleep(0.3)\n"
            "    with marker.open('a') as f: f.write('thread;')\n"
            "threading.Thread(target=late).start()\n"
            "atexit.register(lambda: marker.open('a').write('atexit;'))\n"
            "sys.argv = ['leadscore', *sys.argv[2:]]\n"
            "main()\n")
    ok = subprocess.run([sys.executable, "-c", code, str(marker), "--version"], capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0 and ok.stdout.strip().startswith("leadscore"), ok.stderr
    assert marker.read_text() == "thread;atexit;"  # the thread was waited for, then the atexit functions ran
    marker.unlink()
    bad = subprocess.run([sys.executable, "-c", code, str(marker), "no-such-command"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "No such command" in bad.stderr and "Traceback" not in bad.stderr
    assert marker.read_text() == "thread;atexit;"
