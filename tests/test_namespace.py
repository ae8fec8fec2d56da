"""One installed namespace: the built wheel puts only `leadscore` on the path, so a user's own `models/` or
`features/` package cannot shadow the project's, and the Python API, `python -m leadscore` and the MLflow pyfunc
model all work from such a folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # From a clean copy of the sources (an in-tree build/ folder could carry stale modules into the wheel).
    src = out / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info",
                                                             "__pycache__", "leadscore-demo", "mlruns", "mlartifacts",
                                                             "*.db", ".pytest_cache", ".ruff_cache"))
    # No build isolation: the build uses this environment's setuptools, so the test needs no network.
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("leadscore-*.whl")
    return path


def test_wheel_installs_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"leadscore"}
    for sub in ("features", "models", "training", "serve", "analytics"):
        assert f"leadscore/{sub}/__init__.py" in names
    assert "leadscore/models/pyfunc_entry.py" in names
    # The example rule sets and configs travel as package data.
    for kind in ("rules", "configs"):
        shipped = {f"leadscore/{kind}/{p.name}" for p in (ROOT / kind).glob("*.yaml")}
        assert shipped and shipped <= set(names)
    top_level = next(n for n in names if n.endswith("top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["leadscore"]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh environment with only the wheel installed; third-party packages come from this environment."""
    env = tmp_path_factory.mktemp("env")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env / "venv")], check=True)
    python = env / "venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                           "--target", site, str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # This environment's site-packages supplies pandas, LightGBM, MLflow...; a path added by a .pth line is not a
    # site dir, so the editable install of the checkout living there is not activated.
    Path(site, "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_installed_wheel_finds_its_examples_from_an_empty_folder(installed, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    script = ("from leadscore.examples import example_path\n"
              "from leadscore.models.rules import load_rules\n"
              "path = example_path('rules/example.yaml')\n"
              "assert load_rules(path).criteria and example_path('configs/demo.yaml').is_file()\n"
              "print(path)")
    done = _run(installed, empty, "-c", script)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().startswith(str(Path(installed).parents[1]))  # inside the fresh environment
    init = _run(installed, empty, "-m", "leadscore", "init", "project")
    assert init.returncode == 0, init.stderr[-3000:]
    assert (empty / "project" / "rules" / "example.yaml").read_bytes() == (ROOT / "rules" / "example.yaml").read_bytes()
    assert (empty / "project" / "configs" / "demo.yaml").is_file()


@pytest.fixture()
def user_project(tmp_path) -> Path:
    """A data scientist's own project with packages named like the repository's folders."""
    for pkg in ("models", "features", "training", "serve", "analytics"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(f"raise ImportError('the user project {pkg} was imported')\n")
    return tmp_path


def _run(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run([str(python), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow  # an installed wheel's API, CLI and pyfunc in subprocesses: half a minute
def test_api_cli_and_pyfunc_work_beside_a_user_models_package(installed, user_project, logged, small_world):
    result, run, _ = logged
    leads = user_project / "leads.csv"
    small_world.leads.head(50).to_csv(leads, index=False)
    script = f"""
import sys
sys.path.insert(0, {str(user_project)!r})   # the user's folder first, as when a notebook runs there
import leadscore, leadscore.models.bundle
assert leadscore.models.bundle.__file__.startswith({str(Path(installed).parents[1])!r}), leadscore.__file__
from leadscore.serve.predictor import Predictor
import pandas as pd
p = Predictor.load("models:/lead-conversion@champion", tracking_uri={run.tracking_uri!r})
scores = p.score(pd.read_csv({str(leads)!r}, dtype=str), as_of="2025-06-01", reasons=False)
import mlflow
mlflow.set_tracking_uri({run.tracking_uri!r})
model = mlflow.pyfunc.load_model("models:/lead-conversion@champion")
from leadscore.models.registry import pyfunc_input
feats = p.features(pd.read_csv({str(leads)!r}, dtype=str), as_of="2025-06-01")
out = model.predict(pyfunc_input(p.spec, feats.features))
assert abs(out["probability"].to_numpy() - scores["probability"].to_numpy()).max() < 1e-12
print("ok", len(scores))
"""
    done = _run(installed, user_project, "-c", script)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok", "50"]

    cli = _run(installed, user_project, "-m", "leadscore", "score", "--model", "models:/lead-conversion@champion",
               "--tracking-uri", run.tracking_uri, "--leads", str(leads), "--out", str(user_project / "s.csv"),
               "--as-of", "2025-06-01", "--no-reasons")
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert "Scored 50 of 50 leads" in cli.stdout
