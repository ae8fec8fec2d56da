"""Packaging: the packages come from this repository, imports have no side effects, the CLI starts fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "models", "training", "serve", "analytics", "presentation", "leadscore")


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


# ------------------------------------------------------------------------------------ shipped examples


def test_every_repository_rule_set_and_config_is_shipped_and_found(tmp_path, monkeypatch):
    from leadscore.examples import example_files, example_path

    monkeypatch.chdir(tmp_path)  # an empty folder: nothing is found relative to the working directory
    for kind, pattern in (("rules", "*.yaml"), ("configs", "*.yaml")):
        in_repo = sorted(p.name for p in (REPO / kind).glob(pattern))
        assert in_repo and set(in_repo) <= {p.name for p in example_files(kind)}
        for name in in_repo:
            path = example_path(f"{kind}/{name}")
            assert path.is_absolute() and path.read_bytes() == (REPO / kind / name).read_bytes()


def test_shipped_rules_load(tmp_path, monkeypatch):
    from leadscore.examples import example_path
    from leadscore.models.rules import load_rules

    monkeypatch.chdir(tmp_path)
    assert load_rules(example_path("rules/example.yaml")).criteria


def test_unknown_example_names_what_exists():
    from leadscore.examples import example_path
    from leadscore.features.errors import ConfigError

    with pytest.raises(ConfigError, match="rules/example.yaml"):
        example_path("rules/missing.yaml")
    with pytest.raises(ConfigError, match="expected one of rules, configs"):
        example_path("notebooks/01-retrain.ipynb")


def test_init_copies_the_examples_and_keeps_edited_copies(tmp_path):
    from typer.testing import CliRunner

    from leadscore.cli import app

    target = tmp_path / "project"
    done = CliRunner().invoke(app, ["init", str(target), "--json"])
    assert done.exit_code == 0, done.output
    files = [Path(p) for p in json.loads(done.output)["files"]]
    assert {p.relative_to(target).as_posix() for p in files} >= {"rules/example.yaml", "configs/demo.yaml",
                                                                   "rules/README.md"}
    assert (target / "rules" / "example.yaml").read_bytes() == (REPO / "rules" / "example.yaml").read_bytes()

    (target / "rules" / "example.yaml").write_text("# edited\n")
    again = CliRunner().invoke(app, ["init", str(target)])
    assert again.exit_code == 2 and "--force" in again.output
    assert (target / "rules" / "example.yaml").read_text() == "# edited\n"  # nothing overwritten
    forced = CliRunner().invoke(app, ["init", str(target), "--force"])
    assert forced.exit_code == 0, forced.output
    assert (target / "rules" / "example.yaml").read_bytes() == (REPO / "rules" / "example.yaml").read_bytes()
