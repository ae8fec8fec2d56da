"""Packaging: the packages come from this repository, imports have no side effects, the CLI starts fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "models", "training", "serve", "analytics", "leadscore")


@pytest.mark.parametrize("name", PACKAGES)
def test_package_imports_from_this_repository(name):
    module = __import__(name)
    assert Path(module.__file__).resolve().parent == REPO / name


def _all_modules() -> list[str]:
    mods = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).glob("*.py")):
            # __main__ runs the CLI; pyfunc_entry is executed by MLflow when it loads a model, never imported.
            if path.stem in ("__main__", "pyfunc_entry"):
                continue
            mods.append(pkg if path.stem == "__init__" else f"{pkg}.{path.stem}")
    return mods


def test_importing_every_module_writes_nothing(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    code = f"import importlib\nfor m in {_all_modules()!r}:\n    importlib.import_module(m)\n"
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "MPLCONFIGDIR": str(home / "mpl")}
    subprocess.run([sys.executable, "-c", code], cwd=work, env=env, check=True, timeout=120)
    assert list(work.iterdir()) == []
    assert list(home.iterdir()) == []


def test_cli_help_does_not_import_heavy_libraries():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom leadscore.cli import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "heavy = [m for m in ('pandas', 'lightgbm', 'mlflow', 'sklearn', 'duckdb') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


def test_version_flag():
    from leadscore import __version__

    out = subprocess.run([sys.executable, "-m", "leadscore", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    assert out.stdout.strip() == f"leadscore {__version__}"
